"""Symbolic stage: replace each learned KAN edge by a closed-form function and export formulas.

Following the KAN recipe (Liu et al. 2024, arXiv:2404.19756, section 2.5.1) as used for
posterior compression (arXiv:2508.18698): every active edge of the fitted spline network is
matched by pykan's symbolic fitting (its ``fit_params`` grid search of ``c f(a x + b) + d``
over a small function library, scored by R^2 and simplicity as ``suggest_symbolic`` does, then
installed with ``fix_symbolic``), the affine constants are fine-tuned on the density loss, and
each node is written as one formula of the previous layer's nodes for :mod:`.model_file`.
Layers are made symbolic one at a time, from the output back, with fine-tuning after each:
the layers still in spline form adapt to the formulas before they are themselves matched.

Edges whose activation hardly varies over the data are pruned to constants first: they cost
bytes in the expression file and carry no information.  A first-layer edge that no single
library function matches well gets a second one, fitted to the residual (a two-term
symbolic regression of that edge, beyond pykan's one function per edge).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from gwtools.compression.kan_density import (
    KANDensityFit,
    mixture_log_prob,
    quiet_pykan,
    spline_layer_forward,
)

__all__ = ["SymbolicConfig", "SymbolicFit", "fit_symbolic", "node_formulas", "symbolic_forward"]

logger = logging.getLogger(__name__)

# pykan library names -> formula templates in the variable ``u = a*x + b``.
_TEMPLATES = {
    "x": "{u}",
    "x^2": "({u})**2",
    "x^3": "({u})**3",
    "exp": "exp({u})",
    "sin": "sin({u})",
    "cos": "cos({u})",
    "tanh": "tanh({u})",
    "abs": "abs({u})",
    "gaussian": "exp(-({u})**2)",
}


@dataclass(frozen=True)
class SymbolicConfig:
    """Settings of the symbolic stage.

    Parameters
    ----------
    hidden_library, output_library : tuple of str
        pykan function names tried on the first-layer and output-layer edges.  Small
        libraries keep the fit fast and the formulas short.
    hidden_weight_simple, output_weight_simple : float
        pykan's trade-off between simplicity and R^2 in [0, 1], per layer.  The first layer
        has few edges (``d * hidden`` at most) that carry the network's nonlinearity, so it
        leans towards accuracy; the output layer has ``hidden * 3 K d / 2`` edges, and
        simple (mostly linear) ones cost little once the first layer can adapt to them.
    fallback_output_weight_simple : float or None
        Where the output layer made symbolic (and fine-tuned) has lost more than
        ``fallback_loss`` nats of validation density against the spline network, it is made
        symbolic again with this trade-off, and the better of the two is kept.  Mostly
        linear output formulas lose little on most posteriors but 0.76 nats on GW151226
        (2-OGC, 6 parameters), whose formulas then fell below a Gaussian mixture; at 0.6
        the loss is 0.19 nats, for 50% more formula bytes there.  None: no second try.
    fallback_loss : float
    hidden_second_term_r2 : float or None
        A first-layer edge whose chosen function leaves an R^2 below this on the fitting
        samples gets a second library function, fitted to the residual: the edge becomes
        ``c1 f1(a1 x + b1) + c2 f2(a2 x + b2) + d``.  One function misses the shape of
        some first-layer splines (on GW170104, O2, 11 parameters, a quarter of them have
        R^2 < 0.99, most on sky-position inputs), and the many output formulas downstream
        cannot make up for it.  None: one function per edge.
    prune_threshold : float
        Edges whose activation standard deviation over the fitting samples is below this are
        replaced by their mean (a constant).
    n_fit_samples : int
        Samples used for the per-edge fits.
    finetune_steps : int
        At most this many Adam steps on the density loss after each layer is made symbolic
        (0: the per-edge fits only).  The validation loss is checked every ``check_every``
        steps; after ``5 * check_every`` steps without improvement the learning rate halves
        and the best parameters so far are restored; fine-tuning stops after
        ``finetune_patience`` checks without improvement or once the learning rate has
        fallen a hundredfold.
    check_every, finetune_patience : int
    output_learning_rate, hidden_learning_rate : float
        Initial Adam learning rates of the fine-tuning after the output layer and after the
        first layer is made symbolic.  The output layer starts several nats off and needs
        the larger steps; the first layer, with its second terms, starts close to its
        splines, and larger steps throw it off for good: on GW170104 (O2, 11 parameters)
        the validation loss ended at 9.90 nats with 3e-3 and at 9.26 with 1e-3 (spline
        network: 9.26).
    digits : int
        Significant digits of the constants written to the formulas, at least.
    rounding_tolerance : float
        A term gets more digits where ``digits`` would move its value by more than this on
        the validation samples (:func:`node_formulas`).  Without it, 3 digits of the
        arguments of ``sin`` edges cost GW170104 (2-OGC, 11 parameters) 0.9 nats of
        held-out density and sent its C2ST from 0.62 to 0.75.
    seed : int
    """

    hidden_library: tuple[str, ...] = ("x", "x^2", "x^3", "tanh", "sin", "gaussian")
    output_library: tuple[str, ...] = ("x", "x^2", "tanh")
    hidden_weight_simple: float = 0.3
    output_weight_simple: float = 0.8
    fallback_output_weight_simple: float | None = 0.6
    fallback_loss: float = 0.1
    hidden_second_term_r2: float | None = 0.99
    prune_threshold: float = 3e-2
    n_fit_samples: int = 600
    finetune_steps: int = 8000
    check_every: int = 50
    finetune_patience: int = 16
    output_learning_rate: float = 3e-3
    hidden_learning_rate: float = 1e-3
    digits: int = 3
    rounding_tolerance: float = 1e-3
    seed: int = 0

    def __post_init__(self):
        for lib in (self.hidden_library, self.output_library):
            unknown = sorted(set(lib) - set(_TEMPLATES))
            if unknown:
                raise ValueError(
                    f"symbolic library names {unknown} are not supported; use {sorted(_TEMPLATES)}"
                )
        if self.finetune_steps < 0:
            raise ValueError(f"finetune_steps must be >= 0, got {self.finetune_steps}")
        if min(self.check_every, self.finetune_patience) < 1:
            raise ValueError("check_every and finetune_patience must be >= 1")
        for name in ("hidden_weight_simple", "output_weight_simple",
                     "fallback_output_weight_simple"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.hidden_second_term_r2 is not None and not self.hidden_second_term_r2 <= 1.0:
            raise ValueError(
                f"hidden_second_term_r2 must be <= 1 or None, got {self.hidden_second_term_r2}")
        if self.digits < 2:
            raise ValueError(f"digits must be >= 2, got {self.digits}")
        if not self.rounding_tolerance > 0.0:
            raise ValueError(f"rounding_tolerance must be > 0, got {self.rounding_tolerance}")

    def to_dict(self) -> dict:
        return {
            "hidden_library": list(self.hidden_library),
            "output_library": list(self.output_library),
            "hidden_weight_simple": self.hidden_weight_simple,
            "output_weight_simple": self.output_weight_simple,
            "fallback_output_weight_simple": self.fallback_output_weight_simple,
            "fallback_loss": self.fallback_loss,
            "hidden_second_term_r2": self.hidden_second_term_r2,
            "prune_threshold": self.prune_threshold,
            "n_fit_samples": self.n_fit_samples,
            "finetune_steps": self.finetune_steps,
            "check_every": self.check_every,
            "finetune_patience": self.finetune_patience,
            "output_learning_rate": self.output_learning_rate,
            "hidden_learning_rate": self.hidden_learning_rate,
            "digits": self.digits,
            "rounding_tolerance": self.rounding_tolerance,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class SymbolicFit:
    """The symbolic network and its node formulas.

    Attributes
    ----------
    kan : kan.MultKAN
        A copy of the spline network with every edge symbolic (or pruned).
    formulas : tuple of tuple of str
        Per layer, one formula per output node.
    function_counts : dict
        How many edges got each library function (``"0"``: pruned or masked-out edges).
    second_term_counts : dict
        How many edges got each library function as a second term.
    seconds : float
    """

    kan: object
    formulas: tuple[tuple[str, ...], ...]
    function_counts: dict
    second_term_counts: dict
    seconds: float


def _number(value: float, digits: int) -> str:
    return format(float(value), f".{digits}g")


#: Enough significant digits to reproduce a float32 network's constants.
_MAX_DIGITS = 8


def _fewest_digits(error_of, digits: int, tolerance: float) -> int:
    """Fewest significant digits, at least ``digits``, whose rounding error ``error_of(n)``
    is within ``tolerance``; :data:`_MAX_DIGITS` if none is."""
    for n in range(digits, _MAX_DIGITS):
        if error_of(n) <= tolerance:
            return n
    return _MAX_DIGITS


def node_formulas(kan, digits: int = 4, inputs=None,
                  tolerance: float = 1e-3) -> tuple[tuple[str, ...], ...]:
    """Write each node of a fully symbolic pykan network as a formula string.

    Node ``j`` of layer ``l`` is ``sum_i c f(a x_i + b) + d`` over its symbolic edges plus
    the node bias; identity and square edges are written as polynomials in ``x_i``, and
    all additive constants are folded into one constant per node.

    Parameters
    ----------
    kan : kan.MultKAN
    digits : int
        Significant digits of the constants.
    inputs : sequence of array-like, optional
        Per layer, sample inputs (n, n_in).  Given, each term gets more digits where
        ``digits`` would move its value by more than ``tolerance`` at those inputs:
        ``sin(a x + b)`` with ``|a x| ~ 10``, say, needs five or six digits of ``a`` where a
        linear term needs three.
    tolerance : float
        Largest change of a term (or node constant) by rounding, in the node's units.

    Returns
    -------
    tuple of tuple of str
        ``formulas[l][j]`` in the variables ``x0 .. x{n_in - 1}``.
    """
    layers = []
    for index, (term_layers, bias) in enumerate(zip(_term_layers(kan), kan.node_bias)):
        edges = [(sym.affine.detach().double().numpy(), sym.mask.detach().numpy(), sym.funs_name)
                 for sym in term_layers]
        bias = bias.detach().double().numpy()
        x = None if inputs is None else torch.as_tensor(np.asarray(inputs[index], dtype=float))
        formulas = []
        for j in range(term_layers[0].out_dim):
            constant = float(bias[j])
            terms = []
            for affine, mask, names in edges:
                for i in np.flatnonzero(mask[j]):
                    term, shift = _edge_term(names[j][i], affine[j, i], i,
                                             None if x is None else x[:, i], digits, tolerance)
                    constant += shift
                    if term is not None:
                        terms.append(term)
            n = digits if x is None else _fewest_digits(
                lambda n: abs(float(_number(constant, n)) - constant), digits, tolerance)
            terms.append(_number(constant, n))
            formulas.append("+".join(terms).replace("+-", "-"))
        layers.append(tuple(formulas))
    return tuple(layers)


def _edge_term(name: str, affine, i: int, x, digits: int, tolerance: float):
    """One edge ``c f(a x_i + b) + d`` as a formula term, and the constant it adds to its node.

    ``x`` (n,), optional, are sample values of ``x_i`` for the digits (:func:`node_formulas`).
    Identity and square edges are written as polynomials in ``x_i``.  Returns (term or None,
    constant).
    """
    from kan.utils import SYMBOLIC_LIB

    a, b, c, d = (float(v) for v in affine)
    if name == "0":
        return None, d
    if name == "x":
        slope = c * a
        n = digits if x is None else _fewest_digits(
            lambda n: abs(float(_number(slope, n)) - slope) * float(x.abs().max()),
            digits, tolerance)
        return f"{_number(slope, n)}*x{i}", d + c * b
    if name == "x^2":
        # c (a x + b)^2 = c a^2 x^2 + 2 c a b x + c b^2: two coefficients, half the text of
        # the factored form, and a matrix product for the reader.
        linear, square = 2.0 * c * a * b, c * a * a
        n = digits if x is None else _fewest_digits(
            lambda n: float((abs(float(_number(linear, n)) - linear) * x.abs()
                             + abs(float(_number(square, n)) - square) * x**2).max()),
            digits, tolerance)
        return f"{_number(linear, n)}*x{i}+{_number(square, n)}*x{i}**2", d + c * b * b
    n = digits
    if x is not None:
        fun = SYMBOLIC_LIB[name][0]
        exact = c * fun(a * x + b)

        def error_of(n):
            a_n, b_n, c_n = (float(_number(v, n)) for v in (a, b, c))
            return float((c_n * fun(a_n * x + b_n) - exact).abs().max())

        n = _fewest_digits(error_of, digits, tolerance)
    u = f"{_number(a, n)}*x{i}+{_number(b, n)}"
    return f"{_number(c, n)}*" + _TEMPLATES[name].format(u=u), d


def _term_layers(kan) -> list[tuple]:
    """Per layer, pykan's symbolic layer and, where the network has them, the second terms'
    (:func:`_add_second_terms`)."""
    if not hasattr(kan, "second_symbolic"):
        return [(sym,) for sym in kan.symbolic_fun]
    return list(zip(kan.symbolic_fun, kan.second_symbolic))


def _add_second_terms(kan) -> None:
    """Give ``kan`` an empty second symbolic layer per layer, for edges that need two terms.

    A registered submodule: copies, state dicts and fine-tuning carry its constants along.
    """
    from kan.Symbolic_KANLayer import Symbolic_KANLayer

    kan.second_symbolic = torch.nn.ModuleList(
        Symbolic_KANLayer(sym.in_dim, sym.out_dim) for sym in kan.symbolic_fun)


def _edge_groups(kan) -> list:
    """Per layer, the active symbolic edges grouped by function: (affine, name, inputs,
    outputs), ``affine`` the parameter tensor holding their constants; None for a layer
    that has no symbolic edge yet (a spline layer)."""
    layers = []
    for term_layers in _term_layers(kan):
        if not term_layers[0].mask.detach().numpy().any():
            layers.append(None)
            continue
        groups = []
        for sym in term_layers:
            by_name: dict[str, list[tuple[int, int]]] = {}
            for j, i in zip(*np.nonzero(sym.mask.detach().numpy())):
                name = sym.funs_name[j][i]
                if name != "0":
                    by_name.setdefault(name, []).append((i, j))
            groups += [
                (sym.affine, name, torch.as_tensor([e[0] for e in edges]),
                 torch.as_tensor([e[1] for e in edges]))
                for name, edges in by_name.items()
            ]
        layers.append(groups)
    return layers


def _layer_outputs(kan, z: torch.Tensor, groups=None) -> list[torch.Tensor]:
    """Each layer's output for inputs ``z`` (n, d); see :func:`symbolic_forward`."""
    from kan.utils import SYMBOLIC_LIB

    groups = _edge_groups(kan) if groups is None else groups
    x, outputs = z, []
    for term_layers, act, bias, layer_groups in zip(_term_layers(kan), kan.act_fun,
                                                    kan.node_bias, groups):
        if layer_groups is None:
            x = spline_layer_forward(act, bias, x)
        else:
            # Constant terms d of every active edge (pruned '0' edges included) go to the node.
            constant = sum((sym.affine[:, :, 3] * sym.mask).sum(dim=1) for sym in term_layers)
            out = (bias + constant).expand(len(x), -1)
            for affine, name, inputs, targets in layer_groups:
                a, b, c = (affine[targets, inputs, k] for k in range(3))
                out = out.index_add(1, targets, c * SYMBOLIC_LIB[name][0](a * x[:, inputs] + b))
            x = out
        outputs.append(x)
    return outputs


def symbolic_forward(kan, z: torch.Tensor, groups=None) -> torch.Tensor:
    """Evaluate a pykan network whose layers are each all-symbolic or all-spline.

    Equals ``kan(z)`` (plus the second terms of :func:`_add_second_terms`, which pykan does
    not know), but evaluates each library function once per symbolic layer on all its edges
    instead of looping over edges in Python (pykan's ``Symbolic_KANLayer.forward``), which
    makes fine-tuning tens of times faster.  Layers with no symbolic edge yet are evaluated
    as splines (:func:`gwtools.compression.kan_density.spline_layer_forward`), so a network
    made symbolic layer by layer can be fine-tuned in between.

    Parameters
    ----------
    kan : kan.MultKAN
    z : torch.Tensor, shape (n, d)
    groups : optional
        Precomputed :func:`_edge_groups` of ``kan``.
    """
    return _layer_outputs(kan, z, groups)[-1]


def _choose_function(x, y, library, weight_simple: float):
    """Best ``c f(a x + b) + d`` for one edge, scored as pykan's ``suggest_symbolic`` does.

    pykan's own fit (``kan.utils.fit_params``) is used with a coarser (a, b) sweep than its
    default 101 x 101 (21 x 21, zoomed three times): about 30 times faster, and the density
    fine-tuning that follows adjusts the constants anyway.  A near-exact identity fit
    (R^2 > 0.9999) is taken at once, as the simplest choice.
    """
    from kan.utils import SYMBOLIC_LIB, fit_params

    best = None
    for name in library:
        fun, complexity = SYMBOLIC_LIB[name][0], SYMBOLIC_LIB[name][2]
        params, r2 = fit_params(x, y, fun, grid_number=21, iteration=3, verbose=False)
        r2 = float(r2)
        if not math.isfinite(r2):
            continue
        score = weight_simple * complexity + (1 - weight_simple) * math.log2(1 + 1e-5 - min(r2, 1.0))
        if best is None or score < best[0]:
            best = (score, name, tuple(float(v) for v in params))
        if name == "x" and r2 > 0.9999:
            break
    if best is None:
        return "0", (1.0, 0.0, 0.0, float(y.mean()))
    return best[1], best[2]


def _fix_layer(kan, layer_index: int, subset, library, weight_simple: float,
               prune_threshold: float, counts: dict, second_r2: float | None = None,
               second_counts: dict | None = None) -> None:
    """Replace every active spline edge of one layer by its best library function.

    The edges are fitted to the layer's inputs and spline outputs on ``subset`` in the
    network as it is now: after earlier stages and their fine-tuning.  With ``second_r2``,
    an edge whose function leaves an R^2 below it gets a second function fitted to the
    residual, in ``kan.second_symbolic`` (:func:`_add_second_terms`), counted in
    ``second_counts``.
    """
    from kan.utils import SYMBOLIC_LIB

    with quiet_pykan():
        kan.save_act = True
        with torch.no_grad():
            kan(subset)
        act = kan.act_fun[layer_index]
        mask = act.mask.detach().numpy().copy()
        inputs = kan.acts[layer_index]
        outputs = kan.spline_postacts[layer_index]  # (n, out, in)
        spread = outputs.std(dim=0).numpy()
        for i, j in zip(*np.nonzero(mask)):
            y = outputs[:, j, i]
            if spread[j, i] < prune_threshold:
                name, affine = "0", (1.0, 0.0, 0.0, float(y.mean()))
            else:
                name, affine = _choose_function(inputs[:, i], y, library, weight_simple)
            kan.fix_symbolic(layer_index, i, j, name, fit_params_bool=False,
                             verbose=False, log_history=False)
            kan.symbolic_fun[layer_index].affine.data[j, i] = torch.as_tensor(affine)
            counts[name] = counts.get(name, 0) + 1
            if second_r2 is None or name == "0":
                continue
            a, b, c, d = affine
            residual = y - (c * SYMBOLIC_LIB[name][0](a * inputs[:, i] + b) + d)
            if 1.0 - float(residual.var() / y.var()) >= second_r2:
                continue
            second_name, second_affine = _choose_function(inputs[:, i], residual, library,
                                                          weight_simple)
            if second_name == "0":
                continue
            second = kan.second_symbolic[layer_index]
            second.fix_symbolic(i, j, second_name, verbose=False)
            second.mask.data[j, i] = 1.0
            second.affine.data[j, i] = torch.as_tensor(second_affine)
            second_counts[second_name] = second_counts.get(second_name, 0) + 1
        kan.save_act = False


def _finetune(kan, z_train, z_val, n_components: int, config, learning_rate: float, rng,
              batch: int):
    """Adam on the density loss over the free parameters, from ``learning_rate``; keeps the
    best validation state.

    Free are the affine constants of symbolic layers, the coefficients and scales of spline
    layers, and every node bias.  Returns the best validation loss and the steps taken.
    """
    groups = _edge_groups(kan)

    def loss_on(z):
        return -mixture_log_prob(symbolic_forward(kan, z, groups), z, n_components).mean()

    params = list(kan.node_bias)
    for term_layers, act, layer_groups in zip(_term_layers(kan), kan.act_fun, groups):
        params += ([sym.affine for sym in term_layers] if layer_groups is not None
                   else [act.coef, act.scale_base, act.scale_sp])
    for p in params:
        p.requires_grad_(True)
    optimiser = torch.optim.Adam(params, lr=learning_rate)
    # A freshly symbolic layer starts several nats worse per sample and keeps improving for
    # thousands of steps: a plateau schedule with early stopping spends steps only while
    # they help.
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5, patience=4)
    with torch.no_grad():
        best = float(loss_on(z_val))
    logger.info("fine-tuning from validation loss %.4f", best)
    best_state = copy.deepcopy(kan.state_dict())
    since_best = steps_taken = 0
    for step in range(config.finetune_steps):
        steps_taken = step + 1
        rows = torch.as_tensor(rng.integers(0, len(z_train), batch))
        loss = loss_on(z_train[rows])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if steps_taken % config.check_every == 0 or steps_taken == config.finetune_steps:
            with torch.no_grad():
                val = float(loss_on(z_val))
            rate = optimiser.param_groups[0]["lr"]
            schedule.step(val if math.isfinite(val) else math.inf)
            if optimiser.param_groups[0]["lr"] < rate:
                # A step size that has stopped helping may also have thrown the parameters
                # off (formulas like sin(a x + b) with large a are touchy): go on, more
                # slowly, from the best state.
                kan.load_state_dict(best_state)
            if math.isfinite(val) and val < best - 1e-4:
                best, best_state, since_best = val, copy.deepcopy(kan.state_dict()), 0
            else:
                since_best += 1
            if (since_best >= config.finetune_patience
                    or optimiser.param_groups[0]["lr"] < learning_rate / 100):
                break
    kan.load_state_dict(best_state)
    for p in params:
        p.requires_grad_(False)
    return best, steps_taken


def fit_symbolic(
    fitted: KANDensityFit,
    y: np.ndarray,
    config: SymbolicConfig | None = None,
) -> SymbolicFit:
    """Make every edge of a fitted KAN density symbolic, fine-tune, and write the formulas.

    Parameters
    ----------
    fitted : KANDensityFit
        Output of :func:`gwtools.compression.kan_density.fit` (left unchanged).
    y : numpy.ndarray, shape (n, d)
        The unbounded training coordinates used for that fit.
    config : SymbolicConfig, optional

    Returns
    -------
    SymbolicFit
    """
    config = config or SymbolicConfig()
    start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    z_all = torch.as_tensor((y - fitted.mean) / fitted.scale, dtype=torch.float32)
    train = np.setdiff1d(np.arange(len(y)), fitted.validation_index)
    z_train = z_all[train]
    z_val = z_all[fitted.validation_index]
    subset = z_train[rng.permutation(len(z_train))[: config.n_fit_samples]]

    batch = fitted.config.batch_size * 4
    n_components = fitted.config.n_components

    def make_symbolic(kan, layer_index, weight_simple, counts, second_counts=None):
        hidden = layer_index == 0
        _fix_layer(kan, layer_index, subset,
                   config.hidden_library if hidden else config.output_library, weight_simple,
                   config.prune_threshold, counts,
                   config.hidden_second_term_r2 if hidden else None, second_counts)
        best, steps = _finetune(
            kan, z_train, z_val, n_components, config,
            config.hidden_learning_rate if hidden else config.output_learning_rate, rng, batch)
        logger.info("layer %d symbolic (simplicity weight %.2f): %d fine-tuning steps, "
                    "validation loss %.4f", layer_index, weight_simple, steps, best)
        return best

    # Layer by layer, from the output back: the output layer's many edges are made symbolic
    # (mostly linear) while the first layer is still a spline that can absorb their errors
    # in fine-tuning; then the first layer's few edges, fitted to what it has become, and
    # everything is fine-tuned again.  On GW150914 (11 parameters) the validation loss
    # ends at 10.65 nats, against 11.30 with both layers made symbolic at once (the spline
    # network: 10.67).
    spline = copy.deepcopy(fitted.kan)
    _add_second_terms(spline)
    kan, counts = copy.deepcopy(spline), {}
    best = make_symbolic(kan, 1, config.output_weight_simple, counts)
    spline_loss = fitted.validation_loss[fitted.best_epoch]
    if (config.fallback_output_weight_simple is not None
            and best > spline_loss + config.fallback_loss):
        retry, retry_counts = copy.deepcopy(spline), {}
        retry_best = make_symbolic(retry, 1, config.fallback_output_weight_simple,
                                   retry_counts)
        if retry_best < best:
            kan, counts, best = retry, retry_counts, retry_best
    second_counts = {}
    best = make_symbolic(kan, 0, config.hidden_weight_simple, counts, second_counts)
    with torch.no_grad():
        layer_inputs = [z_val] + _layer_outputs(kan, z_val)[:-1]
    formulas = node_formulas(kan, config.digits, layer_inputs, config.rounding_tolerance)
    seconds = time.perf_counter() - start
    logger.info(
        "symbolic network: validation loss %.4f, edge functions %s, second terms %s, %.1f s",
        best, counts, second_counts, seconds,
    )
    return SymbolicFit(
        kan=kan,
        formulas=formulas,
        function_counts=counts,
        second_term_counts=second_counts,
        seconds=seconds,
    )
