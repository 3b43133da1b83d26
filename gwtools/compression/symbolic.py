"""Symbolic stage: replace each learned KAN edge by a closed-form function and export formulas.

Following the KAN recipe (Liu et al. 2024, arXiv:2404.19756, section 2.5.1) as used for
posterior compression (arXiv:2508.18698): every active edge of the fitted spline network is
matched by pykan's symbolic fitting (its ``fit_params`` grid search of ``c f(a x + b) + d``
over a small function library, scored by R^2 and simplicity as ``suggest_symbolic`` does, then
installed with ``fix_symbolic``), the affine constants are fine-tuned on the density loss, and
each node is written as one formula of the previous layer's nodes (:mod:`.formulas`).
Layers are made symbolic one at a time, from the output back, with fine-tuning after each:
the layers still in spline form adapt to the formulas before they are themselves matched.

Edges whose activation hardly varies over the data are pruned to constants first: they cost
bytes in the expression file and carry no information.  A first-layer edge that no single
library function matches well gets a second one, fitted to the residual (a two-term
symbolic regression of that edge, beyond pykan's one function per edge).

pykan is reached only through :mod:`.pykan_adapter`, fine-tuning runs
:func:`gwtools.compression.training.train`, and every random choice comes from a
:class:`numpy.random.Generator` seeded with :attr:`SymbolicConfig.seed`.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from gwtools.compression import pykan_adapter
from gwtools.compression.formulas import LIBRARY, write_formulas
from gwtools.compression.kan_density import KANDensityFit, mixture_log_prob
from gwtools.compression.training import TrainingSchedule, train

__all__ = ["SymbolicConfig", "SymbolicFit", "fit_symbolic"]

logger = logging.getLogger(__name__)


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
        linear output formulas lose little on most posteriors, but on a few most of a nat,
        enough to fall below a Gaussian mixture; a weight of 0.6 brings the loss to a
        fraction of a nat there, for about 50% more formula bytes.  None: no second try.
    fallback_loss : float
    hidden_second_term_r2 : float or None
        A first-layer edge whose chosen function leaves an R^2 below this on the fitting
        samples gets a second library function, fitted to the residual: the edge becomes
        ``c1 f1(a1 x + b1) + c2 f2(a2 x + b2) + d``.  One function misses the shape of
        some first-layer splines (at 11 parameters up to a quarter of them have R^2 < 0.99,
        most on sky-position inputs), and the many output formulas downstream cannot make up
        for it.  None: one function per edge.
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
        splines, and larger steps (3e-3 rather than 1e-3) can throw it off for good, more
        than half a nat from the spline network's validation loss.
    digits : int
        Significant digits of the constants written to the formulas, at least.
    rounding_tolerance : float
        A term gets more digits where ``digits`` would move its value by more than this on
        the validation samples (:func:`~gwtools.compression.formulas.write_layer_formulas`).
        Without it, 3 digits of the arguments of ``sin`` edges can cost most of a nat of
        held-out density: the phase of a sine with a large argument is sensitive to them.
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
            unknown = sorted(set(lib) - set(LIBRARY))
            if unknown:
                raise ValueError(
                    f"symbolic library names {unknown} are not supported; use {sorted(LIBRARY)}"
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


def _choose_function(x, y, library, weight_simple: float):
    """Best ``c f(a x + b) + d`` for one edge, scored as pykan's ``suggest_symbolic`` does.

    Each library function is fitted by pykan's grid search
    (:func:`~gwtools.compression.pykan_adapter.fit_library_function`).  A near-exact
    identity fit (R^2 > 0.9999) is taken at once, as the simplest choice.
    """
    best = None
    for name in library:
        params, r2 = pykan_adapter.fit_library_function(x, y, name)
        if not math.isfinite(r2):
            continue
        score = (weight_simple * pykan_adapter.library_complexity(name)
                 + (1 - weight_simple) * math.log2(1 + 1e-5 - min(r2, 1.0)))
        if best is None or score < best[0]:
            best = (score, name, params)
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
    residual (a second term, :func:`~gwtools.compression.pykan_adapter.add_second_terms`),
    counted in ``second_counts``.
    """
    inputs, outputs, mask = pykan_adapter.edge_activations(kan, layer_index, subset)
    spread = outputs.std(dim=0).numpy()
    for i, j in zip(*np.nonzero(mask)):
        y = outputs[:, j, i]
        if spread[j, i] < prune_threshold:
            name, affine = "0", (1.0, 0.0, 0.0, float(y.mean()))
        else:
            name, affine = _choose_function(inputs[:, i], y, library, weight_simple)
        pykan_adapter.set_symbolic_edge(kan, layer_index, i, j, name, affine)
        counts[name] = counts.get(name, 0) + 1
        if second_r2 is None or name == "0":
            continue
        a, b, c, d = affine
        residual = y - (c * pykan_adapter.library_function(name)(a * inputs[:, i] + b) + d)
        if 1.0 - float(residual.var() / y.var()) >= second_r2:
            continue
        second_name, second_affine = _choose_function(inputs[:, i], residual, library,
                                                      weight_simple)
        if second_name == "0":
            continue
        pykan_adapter.set_symbolic_edge(kan, layer_index, i, j, second_name, second_affine,
                                        second=True)
        second_counts[second_name] = second_counts.get(second_name, 0) + 1


def _finetune(kan, z_train, z_val, n_components: int, config, learning_rate: float, rng,
              batch: int):
    """Adam on the density loss over the free parameters, from ``learning_rate``; keeps the
    best validation state.

    Free are the affine constants of symbolic layers, the coefficients and scales of spline
    layers, and every node bias.  The validation loss is checked every
    ``config.check_every`` steps.  Returns the best validation loss and the steps taken.
    """
    groups = pykan_adapter.edge_groups(kan)

    def loss(z):
        return -mixture_log_prob(pykan_adapter.symbolic_forward(kan, z, groups), z,
                                 n_components).mean()

    def batches(check):
        steps = min(config.check_every, config.finetune_steps - check * config.check_every)
        return (torch.as_tensor(rng.integers(0, len(z_train), batch)) for _ in range(steps))

    params = pykan_adapter.fine_tuning_parameters(kan, groups)
    # A freshly symbolic layer starts several nats worse per sample and keeps improving for
    # thousands of steps: a plateau schedule with early stopping spends steps only while
    # they help.  Formulas like sin(a x + b) with large a are touchy: when the step size
    # halves, fine-tuning goes on from the best state.
    schedule = TrainingSchedule(
        learning_rate=learning_rate, max_rounds=math.ceil(config.finetune_steps / config.check_every),
        patience=config.finetune_patience, plateau_patience=4, restore_on_decay=True,
        min_learning_rate_factor=0.01, start_from_initial=True)
    result = train(kan, params, loss, z_train, z_val, batches, schedule, label="fine-tuning")
    for p in params:
        p.requires_grad_(False)
    return result.best_loss, result.steps


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
    # everything is fine-tuned again.  This ends at about the spline network's validation
    # loss, where making both layers symbolic at once can lose more than half a nat.
    spline = copy.deepcopy(fitted.kan)
    pykan_adapter.add_second_terms(spline)
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
        layer_inputs = [z_val] + pykan_adapter.layer_outputs(kan, z_val)[:-1]
    formulas = write_formulas(pykan_adapter.symbolic_terms(kan),
                              [x.double().numpy() for x in layer_inputs], config.digits,
                              config.rounding_tolerance)
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
