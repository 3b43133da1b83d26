"""Node formulas of symbolic KAN layers: writing them, and reading them back safely.

A symbolic layer (Liu et al. 2024, arXiv:2404.19756, section 2.5.1; as used for posterior
compression in arXiv:2508.18698) has, on each edge ``i -> j``, one or two terms
``c f(a x_i + b) + d`` with ``f`` from a small function library (:data:`LIBRARY`).  Node ``j``
is written as one formula in the variables ``x0, x1, ...`` of the layer's inputs
(:func:`write_layer_formulas`), with identity and square edges expanded into polynomial
terms, and every constant with as few significant digits as keep each term within a tolerance
at sample inputs.

Reading (:func:`parse_formula`) goes through a small whitelisting compiler of Python's
:mod:`ast`: numbers, ``x<i>``, ``+ - * / **`` and the library's functions; nothing is passed
to :func:`eval`.  Terms linear or quadratic in one input are returned as a coefficient
matrix, so a layer of formulas is mostly one matrix product
(:class:`gwtools.compression.layers.ExpressionLayer`).

numpy only: no torch, no pykan.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LIBRARY",
    "EdgeTerms",
    "formula_variables",
    "parse_formula",
    "permute_variables",
    "write_formulas",
    "write_layer_formulas",
]

_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "exp": np.exp,
    "sin": np.sin,
    "cos": np.cos,
    "tanh": np.tanh,
    "abs": np.abs,
}
_BINARY = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
    ast.Pow: np.power,
}


def _variable_index(node: ast.AST) -> int | None:
    """``i`` for a name node ``x<i>``; None for anything else."""
    if isinstance(node, ast.Name) and node.id.startswith("x") and node.id[1:].isdigit():
        return int(node.id[1:])
    return None


def _compile(node: ast.AST, n_in: int) -> Callable[[np.ndarray], np.ndarray]:
    """Compile a whitelisted expression tree into a function of the input matrix (n, n_in)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        value = float(node.value)
        return lambda x: value
    if isinstance(node, ast.Name):
        column = _variable_index(node)
        if column is None or column >= n_in:
            raise ValueError(f"unknown variable {node.id!r} (expected x0 .. x{n_in - 1})")
        return lambda x: x[:, column]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _compile(node.operand, n_in)
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        return lambda x: sign * inner(x)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        op = _BINARY[type(node.op)]
        left, right = _compile(node.left, n_in), _compile(node.right, n_in)
        return lambda x: op(left(x), right(x))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and len(node.args) == 1
        and not node.keywords
    ):
        fun, arg = _FUNCTIONS[node.func.id], _compile(node.args[0], n_in)
        return lambda x: fun(arg(x))
    raise ValueError(
        f"unsupported expression element {ast.dump(node)[:60]!r}; allowed: numbers, x<i>, "
        f"+ - * / **, and {sorted(_FUNCTIONS)}"
    )


def _additive_terms(node: ast.AST, sign: float = 1.0):
    """Flatten a top-level sum into (sign, term) pairs."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        yield from _additive_terms(node.left, sign)
        yield from _additive_terms(node.right, sign if isinstance(node.op, ast.Add) else -sign)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        yield from _additive_terms(node.operand, -sign)
    else:
        yield sign, node


def _number_node(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool))


def _monomial(node: ast.AST) -> tuple[float, str | None, int] | None:
    """``c``, ``x3``, ``c*x3``, ``x3**2`` or ``c*x3**2`` as (c, name, power); None for
    anything else."""
    if _number_node(node):
        return float(node.value), None, 0
    coefficient = 1.0
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and _number_node(node.left):
        coefficient, node = float(node.left.value), node.right
    power = 1
    if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow)
            and _number_node(node.right) and node.right.value == 2):
        power, node = 2, node.left
    if isinstance(node, ast.Name):
        return coefficient, node.id, power
    return None


def formula_variables(text: str) -> set[int]:
    """Indices ``i`` of the variables ``x<i>`` a formula uses."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"cannot parse formula {text!r}: {err.msg}") from None
    return {i for i in map(_variable_index, ast.walk(tree)) if i is not None}


def parse_formula(text: str, n_in: int):
    """Parse one node formula into its polynomial part and compiled nonlinear terms.

    Parameters
    ----------
    text : str
        E.g. ``"0.31*x0 - 0.2*x0**2 - 1.2*tanh(0.8*x2 + 0.1) + 0.05"``; variables
        ``x0 .. x{n_in-1}``.
    n_in : int

    Returns
    -------
    weights : numpy.ndarray, shape (n_in, 2)
        Coefficients of the terms ``c*x<i>`` (column 0) and ``c*x<i>**2`` (column 1).
    constant : float
    nonlinear : list of callables
        Each maps the input matrix (n, n_in) to an (n,) array.
    """
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as err:
        raise ValueError(f"cannot parse formula {text!r}: {err.msg}") from None
    weights = np.zeros((n_in, 2))
    constant = 0.0
    nonlinear = []
    for sign, term in _additive_terms(tree):
        monomial = _monomial(term)
        if monomial is None:
            compiled = _compile(term, n_in)
            nonlinear.append(compiled if sign > 0 else (lambda x, f=compiled: -f(x)))
            continue
        value, name, power = monomial
        if name is None:
            constant += sign * value
            continue
        _compile(ast.Name(id=name), n_in)  # validates the variable name
        weights[int(name[1:]), power - 1] += sign * value
    return weights, constant, nonlinear


def permute_variables(text: str, position: np.ndarray) -> str:
    """``text`` with every variable ``x<i>`` renamed ``x<position[i]>``."""
    tree = ast.parse(text, mode="eval")
    for node in ast.walk(tree):
        index = _variable_index(node)
        if index is not None:
            node.id = f"x{position[index]}"
    return ast.unparse(tree)


#: Edge functions the writer knows, by pykan library name: the formula template in the
#: variable ``u = a*x + b``, and the function itself (numpy), which the reader evaluates.
LIBRARY: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "x": ("{u}", lambda u: u),
    "x^2": ("({u})**2", lambda u: u**2),
    "x^3": ("({u})**3", lambda u: u**3),
    "exp": ("exp({u})", np.exp),
    "sin": ("sin({u})", np.sin),
    "cos": ("cos({u})", np.cos),
    "tanh": ("tanh({u})", np.tanh),
    "abs": ("abs({u})", np.abs),
    "gaussian": ("exp(-({u})**2)", lambda u: np.exp(-(u**2))),
}

#: Enough significant digits to reproduce a float32 network's constants.
_MAX_DIGITS = 8


@dataclass(frozen=True)
class EdgeTerms:
    """One term ``c f(a x_i + b) + d`` on each live edge ``i -> j`` of a symbolic layer.

    Attributes
    ----------
    names : tuple of tuple of str
        ``names[j][i]``: the :data:`LIBRARY` name of edge ``i -> j``'s function, ``"0"`` for
        an edge pruned to its constant ``d``.
    affine : numpy.ndarray, shape (n_out, n_in, 4)
        ``a, b, c, d`` per edge.
    mask : numpy.ndarray of bool, shape (n_out, n_in)
        Live edges.
    """

    names: tuple[tuple[str, ...], ...]
    affine: np.ndarray
    mask: np.ndarray


def _number(value: float, digits: int) -> str:
    return format(float(value), f".{digits}g")


def _fewest_digits(error_of, digits: int, tolerance: float) -> int:
    """Fewest significant digits, at least ``digits``, whose rounding error ``error_of(n)``
    is within ``tolerance``; :data:`_MAX_DIGITS` if none is."""
    for n in range(digits, _MAX_DIGITS):
        if error_of(n) <= tolerance:
            return n
    return _MAX_DIGITS


def _edge_term(name: str, affine, i: int, x: np.ndarray | None, digits: int, tolerance: float):
    """One edge ``c f(a x_i + b) + d`` as a formula term, and the constant it adds to its node.

    ``x`` (n,), optional, are sample values of ``x_i`` for the digits
    (:func:`write_layer_formulas`).  Identity and square edges are written as polynomials in
    ``x_i``.  Returns (term or None, constant).
    """
    a, b, c, d = (float(v) for v in affine)
    if name == "0":
        return None, d
    if name == "x":
        slope = c * a
        n = digits if x is None else _fewest_digits(
            lambda n: abs(float(_number(slope, n)) - slope) * float(np.abs(x).max()),
            digits, tolerance)
        return f"{_number(slope, n)}*x{i}", d + c * b
    if name == "x^2":
        # c (a x + b)^2 = c a^2 x^2 + 2 c a b x + c b^2: two coefficients, half the text of
        # the factored form, and a matrix product for the reader.
        linear, square = 2.0 * c * a * b, c * a * a
        n = digits if x is None else _fewest_digits(
            lambda n: float((abs(float(_number(linear, n)) - linear) * np.abs(x)
                             + abs(float(_number(square, n)) - square) * x**2).max()),
            digits, tolerance)
        return f"{_number(linear, n)}*x{i}+{_number(square, n)}*x{i}**2", d + c * b * b
    template, fun = LIBRARY[name]
    n = digits
    if x is not None:
        exact = c * fun(a * x + b)

        def error_of(n):
            a_n, b_n, c_n = (float(_number(v, n)) for v in (a, b, c))
            return float(np.abs(c_n * fun(a_n * x + b_n) - exact).max())

        n = _fewest_digits(error_of, digits, tolerance)
    u = f"{_number(a, n)}*x{i}+{_number(b, n)}"
    return f"{_number(c, n)}*" + template.format(u=u), d


def write_layer_formulas(terms: Sequence[EdgeTerms], bias: np.ndarray, inputs=None,
                         digits: int = 4, tolerance: float = 1e-3) -> tuple[str, ...]:
    """Write each node of a symbolic layer as one formula string.

    Node ``j`` is the sum over its live edges of every term set's ``c f(a x_i + b) + d``,
    plus ``bias[j]``; all additive constants are folded into one constant per node.

    Parameters
    ----------
    terms : sequence of EdgeTerms
        The layer's term sets (a first function per edge, and optionally a second one).
    bias : numpy.ndarray, shape (n_out,)
    inputs : numpy.ndarray, shape (n, n_in), optional
        Sample inputs.  Given, each term gets more digits where ``digits`` would move its
        value by more than ``tolerance`` at those inputs: ``sin(a x + b)`` with
        ``|a x| ~ 10``, say, needs five or six digits of ``a`` where a linear term needs three.
    digits : int
        Significant digits of the constants, at least.
    tolerance : float
        Largest change of a term (or node constant) by rounding, in the node's units.

    Returns
    -------
    tuple of str
        One formula per node, in the variables ``x0 .. x{n_in - 1}``.
    """
    x = None if inputs is None else np.asarray(inputs, dtype=np.float64)
    formulas = []
    for j in range(len(bias)):
        constant = float(bias[j])
        parts = []
        for edges in terms:
            for i in np.flatnonzero(edges.mask[j]):
                term, shift = _edge_term(edges.names[j][i], edges.affine[j, i], i,
                                         None if x is None else x[:, i], digits, tolerance)
                constant += shift
                if term is not None:
                    parts.append(term)
        n = digits if x is None else _fewest_digits(
            lambda n, value=constant: abs(float(_number(value, n)) - value), digits, tolerance)
        parts.append(_number(constant, n))
        formulas.append("+".join(parts).replace("+-", "-"))
    return tuple(formulas)


def write_formulas(layers, inputs=None, digits: int = 4,
                   tolerance: float = 1e-3) -> tuple[tuple[str, ...], ...]:
    """:func:`write_layer_formulas` for every layer of a network.

    ``layers`` holds, per layer, its term sets and node biases ``(terms, bias)``;
    ``inputs``, optional, per layer the sample inputs (n, n_in).
    """
    return tuple(
        write_layer_formulas(terms, bias, None if inputs is None else inputs[index], digits,
                             tolerance)
        for index, (terms, bias) in enumerate(layers)
    )
