"""Everything that reaches into pykan (Liu et al. 2024, arXiv:2404.19756; ``kan`` 0.2.x).

pykan's :class:`kan.MultKAN` is used as a container of parameters: its spline layers
(``act_fun``: grids, coefficients, base and spline scales, masks), its node biases, and its
symbolic layers (``symbolic_fun``: per-edge library function and affine constants
``a, b, c, d``).  The fits evaluate those parameters with batched formulas of their own
(:func:`network_forward`, :func:`symbolic_forward`), several times faster than pykan's
forward, which caches every activation, and every write into pykan's internals is here:

* construction without side effects: pykan seeds the global torch, numpy and ``random``
  generators and draws its initial curves with an irreproducible least squares; both are
  undone (:func:`new_kan`), and every initial random value is drawn again from an explicit
  :class:`torch.Generator`;
* grid updates with a deterministic least squares (:func:`update_grids`);
* a second symbolic layer per layer for edges that need two terms (:func:`add_second_terms`),
  which pykan does not know;
* symbolic edges set from fitted constants (:func:`set_symbolic_edge`), and reading them out
  as plain arrays for the formula writer (:func:`symbolic_terms`).

pykan's prints are silenced (:func:`quiet_pykan`) and it writes no checkpoints
(``auto_save=False``).
"""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from gwtools.compression.formulas import EdgeTerms

__all__ = [
    "add_second_terms",
    "edge_activations",
    "edge_groups",
    "fine_tuning_parameters",
    "fit_library_function",
    "layer_outputs",
    "library_complexity",
    "library_function",
    "network_forward",
    "new_kan",
    "quiet_pykan",
    "set_symbolic_edge",
    "spline_arrays",
    "spline_layer_forward",
    "symbolic_forward",
    "symbolic_terms",
    "update_grids",
]


@contextlib.contextmanager
def quiet_pykan() -> Iterator[None]:
    """Silence pykan's prints (it reports every symbolic fit and checkpoint on stdout)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@contextlib.contextmanager
def _global_generators_kept() -> Iterator[None]:
    """Restore torch's, numpy's and ``random``'s global generators afterwards (pykan's
    constructor reseeds all three)."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)


def new_kan(widths: Sequence[int], grids: Sequence[int], masks: Sequence[np.ndarray],
            output_bias: torch.Tensor, *, generator: torch.Generator,
            noise_scale: float = 0.1):
    """A pykan network with edge masks, trainable node biases and reproducible initial values.

    Parameters
    ----------
    widths : sequence of int
        Layer widths ``[n_in, hidden, n_out]``.
    grids : sequence of int
        Spline grid intervals per layer.
    masks : sequence of numpy.ndarray of bool, shapes (n_in, hidden), (hidden, n_out)
        Live edges.
    output_bias : torch.Tensor, shape (n_out,)
        Initial biases of the output nodes.
    generator : torch.Generator
        Draws, layer by layer, pykan's initial values: the random spline curves (uniform,
        amplitude ``noise_scale / G``) and the base scales (uniform in
        ``(-1, 1) / sqrt(n_in)``).
    noise_scale : float
        pykan's ``noise_scale``.

    Returns
    -------
    kan.MultKAN
        Cubic splines on the grid range [-3, 3], uniform grids (``grid_eps = 1``, which the
        numpy evaluator relies on), ``auto_save=False``.
    """
    from kan import KAN

    with quiet_pykan(), _global_generators_kept():
        model = KAN(width=list(widths), grid=list(grids), k=3, grid_range=[-3.0, 3.0], seed=0,
                    auto_save=False, grid_eps=1.0, noise_scale=noise_scale)
    for layer, mask in zip(model.act_fun, masks):
        # pykan fits its initial curves with its irreproducible least squares; they are
        # fitted again here with the deterministic one.
        knots = layer.grid[:, layer.k : -layer.k].T  # (G + 1, in)
        noise = torch.rand(layer.num + 1, layer.in_dim, layer.out_dim, generator=generator)
        noise = (noise - 0.5) * noise_scale / layer.num
        layer.coef.data = _spline_coefficients(knots, noise, layer.grid, layer.k)
        scale_base = torch.rand(layer.in_dim, layer.out_dim, generator=generator) * 2 - 1
        layer.scale_base.data = (scale_base / np.sqrt(layer.in_dim)).to(layer.scale_base.dtype)
        layer.mask.data = torch.as_tensor(mask, dtype=layer.mask.dtype)
        # pykan keeps the grid-update blend per layer.
        layer.grid_eps = 1.0
    for bias in model.node_bias:
        bias.requires_grad_(True)
    model.node_bias[-1].data = output_bias.to(model.node_bias[-1].dtype)
    return model


def spline_layer_forward(layer, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One pykan spline layer plus its node bias, from its parameters: (n, in) -> (n, out).

    ``sum_i mask_ij [scale_base_ij silu(x_i) + scale_sp_ij sum_b coef_ijb B_b(x_i)] + bias_j``,
    what pykan's ``KANLayer`` computes, without its per-edge bookkeeping.
    """
    from kan.spline import B_batch

    mask = layer.mask
    basis = B_batch(x, layer.grid, k=layer.k)  # (n, in, G + k)
    spline_weight = layer.coef * (layer.scale_sp * mask)[:, :, None]  # (in, out, G + k)
    out = torch.nn.functional.silu(x) @ (layer.scale_base * mask)
    out = out + torch.einsum("nim,iom->no", basis, spline_weight)
    return out + bias


def network_forward(kan, z: torch.Tensor) -> torch.Tensor:
    """Evaluate the spline KAN from its parameters, shape (n, d) -> (n, n_out).

    Equals ``kan(z)`` for a model with no symbolic edges and unit node/subnode scales.
    """
    x = z
    for layer, bias in zip(kan.act_fun, kan.node_bias):
        x = spline_layer_forward(layer, bias, x)
    return x


def _spline_coefficients(x, values, grid, k):
    """Least-squares B-spline coefficients (in, out, G + k) of ``values`` (n, in, out) at ``x`` (n, in).

    pykan's ``curve2coef`` uses ``torch.linalg.lstsq`` with the CPU default driver ``gelsy``,
    whose results change in the last bits from call to call on identical input; that made
    fits irreproducible.  The SVD driver ``gelsd`` is deterministic.
    """
    from kan.spline import B_batch

    basis = B_batch(x, grid, k=k)  # (n, in, G + k)
    coef = torch.linalg.lstsq(
        basis.permute(1, 0, 2), values.permute(1, 0, 2), driver="gelsd"
    ).solution  # (in, G + k, out)
    return coef.permute(0, 2, 1).contiguous()


def update_grids(kan, z: torch.Tensor) -> None:
    """Move every layer's uniform knot grid to the range of its inputs, keeping its functions.

    What pykan's ``update_grid`` does for ``grid_eps = 1``, layer after layer on the inputs of
    the already updated layers, with a reproducible least-squares refit.
    """
    from kan.spline import coef2curve, extend_grid

    with torch.no_grad():
        x = z
        for layer, bias in zip(kan.act_fun, kan.node_bias):
            x_sorted = torch.sort(x, dim=0)[0]
            values = coef2curve(x_sorted, layer.grid, layer.coef, layer.k)  # (n, in, out)
            lo, hi = x_sorted[0], x_sorted[-1]
            steps = torch.arange(layer.num + 1, dtype=x.dtype)
            grid = lo[:, None] + (hi - lo)[:, None] / layer.num * steps
            grid = extend_grid(grid, k_extend=layer.k)
            layer.grid.data = grid
            layer.coef.data = _spline_coefficients(x_sorted, values, grid, layer.k)
            x = spline_layer_forward(layer, bias, x)


def spline_arrays(kan) -> dict[str, np.ndarray]:
    """Export the spline network as the arrays of the weights file (float64, unmasked edges).

    Each layer ``l`` gives ``layer{l}_grid_lo`` and ``layer{l}_grid_step`` (per input, the
    uniform knot grid: interior knots ``lo + step * arange(G + 1)``), ``layer{l}_coef``
    (shape (E, G + 3), spline coefficients already multiplied by the spline scale),
    ``layer{l}_scale_base`` (E,) and ``layer{l}_bias`` (out,), where the E edges are the
    nonzero entries of the mask in row-major (input, output) order.
    """
    arrays = {}
    for index, (layer, bias) in enumerate(zip(kan.act_fun, kan.node_bias)):
        grid = layer.grid.detach().double().numpy()
        k = layer.k
        lo = grid[:, k]
        step = (grid[:, -k - 1] - grid[:, k]) / layer.num
        expected = lo[:, None] + step[:, None] * np.arange(-k, layer.num + k + 1)
        if not np.allclose(grid, expected, rtol=1e-5, atol=1e-5 * np.abs(step).max()):
            raise RuntimeError("spline grid is not uniform; grid_eps must stay 1.0")
        mask = layer.mask.detach().numpy() > 0
        coef = (layer.coef * layer.scale_sp[:, :, None]).detach().double().numpy()
        arrays[f"layer{index}_grid_lo"] = lo
        arrays[f"layer{index}_grid_step"] = step
        arrays[f"layer{index}_coef"] = coef[mask]
        arrays[f"layer{index}_scale_base"] = layer.scale_base.detach().double().numpy()[mask]
        arrays[f"layer{index}_bias"] = bias.detach().double().numpy()
    return arrays


# -- symbolic layers ------------------------------------------------------------------------

def library_function(name: str):
    """pykan's torch function of a library name (``SYMBOLIC_LIB``)."""
    from kan.utils import SYMBOLIC_LIB

    return SYMBOLIC_LIB[name][0]


def library_complexity(name: str) -> float:
    """pykan's complexity score of a library function."""
    from kan.utils import SYMBOLIC_LIB

    return SYMBOLIC_LIB[name][2]


def fit_library_function(x: torch.Tensor, y: torch.Tensor, name: str) -> tuple[tuple, float]:
    """pykan's grid-search fit of ``c f(a x + b) + d`` to one edge: constants and R^2.

    A coarser (a, b) sweep than pykan's default 101 x 101 (21 x 21, zoomed three times):
    about 30 times faster, and the density fine-tuning that follows adjusts the constants
    anyway.
    """
    from kan.utils import fit_params

    with quiet_pykan():
        params, r2 = fit_params(x, y, library_function(name), grid_number=21, iteration=3,
                                verbose=False)
    return tuple(float(v) for v in params), float(r2)


def _term_layers(kan) -> list[tuple]:
    """Per layer, pykan's symbolic layer and, where the network has them, the second terms'
    (:func:`add_second_terms`)."""
    if not hasattr(kan, "second_symbolic"):
        return [(sym,) for sym in kan.symbolic_fun]
    return list(zip(kan.symbolic_fun, kan.second_symbolic))


def add_second_terms(kan) -> None:
    """Give ``kan`` an empty second symbolic layer per layer, for edges that need two terms.

    A registered submodule: copies, state dicts and fine-tuning carry its constants along.
    """
    from kan.Symbolic_KANLayer import Symbolic_KANLayer

    kan.second_symbolic = torch.nn.ModuleList(
        Symbolic_KANLayer(sym.in_dim, sym.out_dim) for sym in kan.symbolic_fun)


def edge_activations(kan, layer_index: int, z: torch.Tensor):
    """The inputs (n, in) and spline outputs (n, out, in) of one layer's edges at network
    inputs ``z``, in the network as it is now, and that layer's mask (in, out)."""
    with quiet_pykan():
        kan.save_act = True
        with torch.no_grad():
            kan(z)
        kan.save_act = False
    mask = kan.act_fun[layer_index].mask.detach().numpy().copy()
    return kan.acts[layer_index], kan.spline_postacts[layer_index], mask


def set_symbolic_edge(kan, layer_index: int, i: int, j: int, name: str, affine,
                      second: bool = False) -> None:
    """Make edge ``i -> j`` of a layer the library function ``name`` with constants
    ``affine = (a, b, c, d)``; ``second``: set the edge's second term instead
    (:func:`add_second_terms`)."""
    with quiet_pykan():
        if second:
            sym = kan.second_symbolic[layer_index]
            sym.fix_symbolic(i, j, name, verbose=False)
            sym.mask.data[j, i] = 1.0
        else:
            kan.fix_symbolic(layer_index, i, j, name, fit_params_bool=False, verbose=False,
                             log_history=False)
            sym = kan.symbolic_fun[layer_index]
    sym.affine.data[j, i] = torch.as_tensor(affine)


def edge_groups(kan) -> list:
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


def layer_outputs(kan, z: torch.Tensor, groups=None) -> list[torch.Tensor]:
    """Each layer's output for inputs ``z`` (n, d); see :func:`symbolic_forward`."""
    groups = edge_groups(kan) if groups is None else groups
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
                out = out.index_add(1, targets, c * library_function(name)(a * x[:, inputs] + b))
            x = out
        outputs.append(x)
    return outputs


def symbolic_forward(kan, z: torch.Tensor, groups=None) -> torch.Tensor:
    """Evaluate a pykan network whose layers are each all-symbolic or all-spline.

    Equals ``kan(z)`` (plus the second terms of :func:`add_second_terms`, which pykan does
    not know), but evaluates each library function once per symbolic layer on all its edges
    instead of looping over edges in Python (pykan's ``Symbolic_KANLayer.forward``), which
    makes fine-tuning tens of times faster.  Layers with no symbolic edge yet are evaluated
    as splines (:func:`spline_layer_forward`), so a network made symbolic layer by layer can
    be fine-tuned in between.

    Parameters
    ----------
    kan : kan.MultKAN
    z : torch.Tensor, shape (n, d)
    groups : optional
        Precomputed :func:`edge_groups` of ``kan``.
    """
    return layer_outputs(kan, z, groups)[-1]


def fine_tuning_parameters(kan, groups) -> list[torch.Tensor]:
    """The free parameters of a network made symbolic layer by layer, made trainable: the
    affine constants of symbolic layers, the coefficients and scales of spline layers, and
    every node bias (``groups``: :func:`edge_groups`)."""
    params = list(kan.node_bias)
    for term_layers, act, layer_groups in zip(_term_layers(kan), kan.act_fun, groups):
        params += ([sym.affine for sym in term_layers] if layer_groups is not None
                   else [act.coef, act.scale_base, act.scale_sp])
    for p in params:
        p.requires_grad_(True)
    return params


def symbolic_terms(kan) -> list[tuple[tuple[EdgeTerms, ...], np.ndarray]]:
    """Per layer of a fully symbolic network, its term sets and node biases as plain arrays,
    for :func:`gwtools.compression.formulas.write_formulas`."""
    layers = []
    for term_layers, bias in zip(_term_layers(kan), kan.node_bias):
        terms = tuple(
            EdgeTerms(names=tuple(tuple(row) for row in sym.funs_name),
                      affine=sym.affine.detach().double().numpy(),
                      mask=sym.mask.detach().numpy() > 0)
            for sym in term_layers
        )
        layers.append((terms, bias.detach().double().numpy()))
    return layers
