"""KAN density fit, symbolic stage and the compression pipeline, against a known analytic
density (correlated and bounded in 3-D) and against pykan's own forward pass."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy import stats

from gwtools.compression import kan_density, load, pykan_adapter, symbolic
from gwtools.compression.catalog import CompressionSettings, compress_file
from gwtools.compression.formulas import write_formulas
from gwtools.compression.layers import ExpressionLayer
from gwtools.compression.metrics import c2st, js_divergence_1d
from gwtools.compression.mixture import made_masks
from gwtools.compression.model_file import (
    DensityHeader,
    ModelHeader,
    posterior_from_weights,
)
from gwtools.compression.transforms import TransformStack

NAMES = ("mass_ratio", "a_1", "chirp_mass")


def analytic_samples(n: int, seed: int) -> np.ndarray:
    """q ~ Beta(2, 5); a_1 | q ~ Beta(2 + 6 q, 3); M | q, a_1 ~ LogNormal(ln 30 + 0.5 (q - a_1), 0.1)."""
    rng = np.random.default_rng(seed)
    q = rng.beta(2.0, 5.0, n)
    a = rng.beta(2.0 + 6.0 * q, 3.0)
    m = np.exp(np.log(30.0) + 0.5 * (q - a) + 0.1 * rng.standard_normal(n))
    return np.column_stack([q, a, m])


def analytic_logpdf(x: np.ndarray) -> np.ndarray:
    q, a, m = x.T
    return (
        stats.beta(2.0, 5.0).logpdf(q)
        + stats.beta(2.0 + 6.0 * q, 3.0).logpdf(a)
        + stats.lognorm(s=0.1, scale=30.0 * np.exp(0.5 * (q - a))).logpdf(m)
    )


def test_fast_forward_equals_pykan_forward():
    generator = torch.Generator().manual_seed(0)
    config = kan_density.KANDensityConfig(hidden=5, n_components=2, grid=4)
    model = kan_density.build_kan(3, config)
    for layer in model.act_fun:  # move away from the near-zero initial splines
        layer.coef.data += 0.3 * torch.randn(layer.coef.shape, generator=generator)
    z = torch.randn(200, 3, generator=generator) * 1.5
    with pykan_adapter.quiet_pykan(), torch.no_grad():
        expected = model(z)
        ours = pykan_adapter.network_forward(model, z)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_fits_are_reproducible():
    """Two fits with one seed give bit-identical networks and formulas (pykan's own least
    squares, used at initialisation and grid updates, is not reproducible), whatever the
    global generators hold, and leave those generators as they were."""
    import random

    y = analytic_samples(1500, seed=4)
    y = np.column_stack([np.log(y[:, 0] / (1 - y[:, 0])), np.log(y[:, 1] / (1 - y[:, 1])), np.log(y[:, 2])])
    config = kan_density.KANDensityConfig(hidden=4, n_components=2, max_epochs=8, seed=3)
    settings = symbolic.SymbolicConfig(finetune_steps=20, n_fit_samples=200)
    fits, formulas = [], []
    for global_seed in (11, 12):
        torch.manual_seed(global_seed)
        np.random.seed(global_seed)
        random.seed(global_seed)
        states = (torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
        fits.append(kan_density.fit(y, config))
        formulas.append(symbolic.fit_symbolic(fits[-1], y, settings).formulas)
        assert torch.equal(torch.random.get_rng_state(), states[0])
        assert np.array_equal(np.random.get_state()[1], states[1])
        assert random.getstate() == states[2]
    first, second = (f.kan.state_dict() for f in fits)
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert formulas[0] == formulas[1]


def test_bad_inputs_fail_clearly():
    with pytest.raises(ValueError, match="hidden"):
        kan_density.KANDensityConfig(hidden=0)
    with pytest.raises(ValueError, match="validation_fraction"):
        kan_density.KANDensityConfig(validation_fraction=0.9)
    with pytest.raises(ValueError, match="NaN"):
        kan_density.fit(np.full((50, 2), np.nan))
    with pytest.raises(ValueError, match="shape"):
        kan_density.fit(np.zeros(50))
    with pytest.raises(ValueError, match="not supported"):
        symbolic.SymbolicConfig(hidden_library=("x", "bessel"))
    with pytest.raises(ValueError, match="finetune_steps"):
        symbolic.SymbolicConfig(finetune_steps=-1)
    with pytest.raises(ValueError, match="hidden_weight_simple"):
        symbolic.SymbolicConfig(hidden_weight_simple=1.5)
    with pytest.raises(ValueError, match="heldout_fraction"):
        CompressionSettings(heldout_fraction=1.5)


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    """The analytic posterior written as CSV and compressed with a small, quick model."""
    tmp = tmp_path_factory.mktemp("kan")
    x = analytic_samples(5000, seed=1)
    path = tmp / "analytic.csv"
    np.savetxt(path, x, delimiter=",", header=",".join(NAMES), comments="")
    settings = CompressionSettings(
        density={"hidden": 8, "n_components": 4, "max_epochs": 60, "patience": 12},
        symbolic={"finetune_steps": 60, "n_fit_samples": 300},
        metric_samples=4000,
        c2st_samples=1500,
        seed=3,
    )
    summary = compress_file(path, tmp / "model", NAMES, settings=settings)
    return summary, tmp / "model"


@pytest.mark.parametrize("source", ["weights", "expressions"])
def test_regenerated_samples_follow_the_analytic_density(compressed, source):
    _, stem = compressed
    model = load(stem, source=source)
    assert model.parameters == NAMES
    truth = analytic_samples(20000, seed=11)
    draws = model.sample(20000, seed=12)
    y_truth, y_draws = model.transforms.forward(truth), model.transforms.forward(draws)
    jsd = [js_divergence_1d(y_truth[:, j], y_draws[:, j]) for j in range(3)]
    # Same-distribution noise floor at these sizes is ~0.001 bits.
    assert max(jsd) < 0.01, jsd
    assert c2st(y_truth[:4000], y_draws[:4000], seed=0) < 0.58
    # Held-out KL divergence from the truth: E_p[ln p - ln q] over fresh true samples.
    kl = np.mean(analytic_logpdf(truth) - model.log_prob(truth))
    assert -0.02 < kl < 0.12, kl


def test_files_record_provenance_and_metrics(compressed):
    summary, stem = compressed
    weights, expressions = load(stem), load(stem, source="expressions")
    for model in (weights, expressions):
        meta = model.metadata
        assert len(meta["source_sha256"]) == 64
        assert meta["n_train"] + meta["n_heldout"] == 5000
        assert 0.45 < meta["fidelity"]["c2st_accuracy"] < 0.6
        assert np.isfinite(meta["fidelity"]["heldout_log_density"])
    assert summary["weights_bytes"] == stem.with_suffix(".weights.npz").stat().st_size
    # Same seed, same samples, through each file; the two files are different models.
    np.testing.assert_array_equal(weights.sample(3000, seed=5), load(stem).sample(3000, seed=5))
    np.testing.assert_array_equal(
        expressions.sample(3000, seed=5), load(stem, source="expressions").sample(3000, seed=5)
    )
    assert not np.array_equal(weights.sample(10, seed=5), expressions.sample(10, seed=5))


def test_numpy_evaluation_equals_torch_on_the_fitted_network():
    """The exported float64 arrays reproduce the trained network exactly (no quantisation)."""
    x = analytic_samples(3000, seed=2)
    stack = TransformStack.default(NAMES, x)
    y = stack.forward(x)
    fitted = kan_density.fit(y, kan_density.KANDensityConfig(hidden=6, n_components=3,
                                                             max_epochs=5, seed=1))
    part = DensityHeader(n_dim=3, hidden=6, n_components=3, mean=fitted.mean, scale=fitted.scale)
    arrays = {"posterior_" + k: v for k, v in pykan_adapter.spline_arrays(fitted.kan).items()}
    model = posterior_from_weights(ModelHeader(NAMES, stack, part), arrays)
    z = torch.as_tensor((y[:500] - fitted.mean) / fitted.scale)
    with torch.no_grad():
        kan64 = fitted.kan.double()
        expected = kan_density.mixture_log_prob(pykan_adapter.network_forward(kan64, z), z, 3)
    expected = expected.numpy() - np.log(fitted.scale).sum()
    np.testing.assert_allclose(model.density.log_prob_unbounded(y[:500]), expected, atol=1e-8)


def test_symbolic_forward_equals_pykan_forward():
    x = analytic_samples(2000, seed=4)
    y = TransformStack.default(NAMES, x).forward(x)
    fitted = kan_density.fit(y, kan_density.KANDensityConfig(hidden=4, n_components=2,
                                                             max_epochs=3, seed=2))
    # pykan's forward knows one function per edge: no second terms here.
    sym = symbolic.fit_symbolic(fitted, y, symbolic.SymbolicConfig(
        finetune_steps=2, n_fit_samples=200, hidden_second_term_r2=None))
    assert not sym.second_term_counts
    z = torch.as_tensor((y[:300] - fitted.mean) / fitted.scale, dtype=torch.float32)
    with pykan_adapter.quiet_pykan(), torch.no_grad():
        expected = sym.kan(z)
        ours = pykan_adapter.symbolic_forward(sym.kan, z)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)
    # Halfway (output layer symbolic, first layer still splines), as fine-tuned in between.
    half = copy.deepcopy(fitted.kan)
    symbolic._fix_layer(half, 1, z[:200], ("x", "x^2", "tanh"), 0.8, 3e-2, {})
    with pykan_adapter.quiet_pykan(), torch.no_grad():
        expected = half(z)
        ours = pykan_adapter.symbolic_forward(half, z)
        # and the halfway network differs from the spline one: the test sees the switch.
        assert not torch.allclose(ours, pykan_adapter.network_forward(fitted.kan, z), atol=1e-4)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)
    # Every unmasked edge got a function (or was pruned to a constant), no masked one did.
    assert sum(sym.function_counts.values()) == sum(int(m.sum()) for m in made_masks(3, 4, 2))
    # Without fine-tuning the per-edge fits are the result.
    unfitted = symbolic.fit_symbolic(fitted, y, symbolic.SymbolicConfig(finetune_steps=0,
                                                                         n_fit_samples=200))
    assert len(unfitted.formulas[1]) == 3 * 2 * 3


def test_output_layer_falls_back_to_a_less_simple_fit(caplog):
    """Where mostly linear output formulas lose too much, a second, less simple try is made
    and the better one kept; without a fallback there is one try."""
    x = analytic_samples(1500, seed=6)
    y = TransformStack.default(NAMES, x).forward(x)
    fitted = kan_density.fit(y, kan_density.KANDensityConfig(hidden=4, n_components=2,
                                                             max_epochs=3, seed=1))
    quick = {"finetune_steps": 20, "check_every": 10, "n_fit_samples": 150}
    with caplog.at_level("INFO", logger="gwtools.compression.symbolic"):
        always = symbolic.fit_symbolic(fitted, y, symbolic.SymbolicConfig(
            **quick, output_weight_simple=1.0, fallback_output_weight_simple=0.0,
            fallback_loss=-1e9))
    tries = [r.getMessage() for r in caplog.records if "layer 1 symbolic" in r.getMessage()]
    assert len(tries) == 2 and "weight 1.00" in tries[0] and "weight 0.00" in tries[1]
    assert len(always.formulas[1]) == 3 * 2 * 3
    caplog.clear()
    with caplog.at_level("INFO", logger="gwtools.compression.symbolic"):
        symbolic.fit_symbolic(fitted, y, symbolic.SymbolicConfig(
            **quick, fallback_output_weight_simple=None, fallback_loss=-1e9))
    assert sum("layer 1 symbolic" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(ValueError, match="fallback_output_weight_simple"):
        symbolic.SymbolicConfig(fallback_output_weight_simple=1.5)


def test_second_terms_in_the_forward_pass_and_the_formulas():
    """Edges with a second function: the fast forward and the written formulas against an
    explicit sum of c f(a x + b) + d over both terms of every edge."""
    from kan.utils import SYMBOLIC_LIB

    net = kan_density.build_kan(2, kan_density.KANDensityConfig(hidden=3, n_components=1))
    pykan_adapter.add_second_terms(net)
    rng = np.random.default_rng(8)
    names = ("sin", "x", "tanh", "x^2", "gaussian")
    with pykan_adapter.quiet_pykan():
        for layer, (n_in, n_out) in enumerate(((2, 3), (3, 6))):
            for i in range(n_in):
                for j in range(n_out):
                    net.fix_symbolic(layer, i, j, names[(i + j) % 5], fit_params_bool=False,
                                     verbose=False, log_history=False)
                    net.symbolic_fun[layer].affine.data[j, i] = torch.as_tensor(
                        rng.uniform(-1.5, 1.5, 4))
                    if (i + 2 * j) % 3 == 0:
                        second = net.second_symbolic[layer]
                        second.fix_symbolic(i, j, names[(i + 2 * j + 1) % 5], verbose=False)
                        second.mask.data[j, i] = 1.0
                        second.affine.data[j, i] = torch.as_tensor(rng.uniform(-1.5, 1.5, 4))
    net = net.double()
    x = torch.as_tensor(rng.uniform(-2, 2, size=(300, 2)))
    exact_layers, h = [], x
    for layer, bias in enumerate(net.node_bias):
        out = np.zeros((len(h), len(bias))) + bias.detach().numpy()
        for sym in (net.symbolic_fun[layer], net.second_symbolic[layer]):
            for j in range(sym.out_dim):
                for i in range(sym.in_dim):
                    if sym.mask[j, i]:
                        a, b, c, d = (float(v) for v in sym.affine[j, i].detach())
                        fun = SYMBOLIC_LIB[sym.funs_name[j][i]][0]
                        out[:, j] += c * fun(a * h[:, i] + b).numpy() + d
        exact_layers.append(out)
        h = torch.as_tensor(out)
    with torch.no_grad():
        ours = pykan_adapter.symbolic_forward(net, x).numpy()
        with pykan_adapter.quiet_pykan():
            single = net(x).numpy()  # pykan's own forward, without the second terms
    np.testing.assert_allclose(ours, exact_layers[-1], rtol=1e-10, atol=1e-10)
    assert np.abs(single - exact_layers[-1]).max() > 0.1  # the second terms matter here
    inputs = [x, torch.as_tensor(exact_layers[0])]
    formulas = write_formulas(pykan_adapter.symbolic_terms(net), [h.numpy() for h in inputs], 3, 1e-4)
    for text, h, exact in zip(formulas, inputs, exact_layers):
        got = ExpressionLayer.from_formulas(text, h.shape[1])(h.numpy())
        n_terms = 2 * h.shape[1] + 1
        assert np.abs(got - exact).max() <= n_terms * 1e-4


def test_poorly_fitted_first_layer_edges_get_second_terms():
    """With the R^2 bar at 1, every first-layer edge that is not pruned or exactly fitted gets
    a second term, and the written formulas still reproduce the symbolic network."""
    x = analytic_samples(1500, seed=7)
    y = TransformStack.default(NAMES, x).forward(x)
    fitted = kan_density.fit(y, kan_density.KANDensityConfig(hidden=4, n_components=2,
                                                             max_epochs=30, seed=3))
    sym = symbolic.fit_symbolic(fitted, y, symbolic.SymbolicConfig(
        finetune_steps=20, check_every=10, n_fit_samples=200, hidden_second_term_r2=1.0))
    n_second = sum(sym.second_term_counts.values())
    n_live = sum(v for k, v in sym.function_counts.items() if k != "0")
    assert n_second > 0
    assert int(sym.kan.second_symbolic[0].mask.sum()) == n_second
    assert int(sym.kan.second_symbolic[1].mask.sum()) == 0  # first layer only
    assert n_second <= n_live
    z = torch.as_tensor((y[:400] - fitted.mean) / fitted.scale, dtype=torch.float32)
    with torch.no_grad():
        hidden, out = (t.double().numpy() for t in pykan_adapter.layer_outputs(sym.kan, z))
    first = ExpressionLayer.from_formulas(sym.formulas[0], 3)(z.double().numpy())
    np.testing.assert_allclose(first, hidden, atol=2e-2)
    np.testing.assert_allclose(ExpressionLayer.from_formulas(sym.formulas[1], 4)(hidden), out,
                               atol=2e-2)
    with pytest.raises(ValueError, match="hidden_second_term_r2"):
        symbolic.SymbolicConfig(hidden_second_term_r2=1.5)


def test_formulas_keep_enough_digits_for_steep_edges():
    """Each layer's written formulas reproduce its symbolic edges where fixed rounding would
    not: sin(a x + b) with |a x| ~ 40 needs more digits of a than a linear term."""
    from kan.utils import SYMBOLIC_LIB

    net = kan_density.build_kan(2, kan_density.KANDensityConfig(hidden=3, n_components=1))
    rng = np.random.default_rng(5)
    with pykan_adapter.quiet_pykan():
        for layer, (n_in, n_out) in enumerate(((2, 3), (3, 6))):
            for i in range(n_in):
                for j in range(n_out):
                    net.fix_symbolic(layer, i, j, ("sin", "x", "tanh", "x^2")[(i + j) % 4],
                                     fit_params_bool=False, verbose=False, log_history=False)
                    net.symbolic_fun[layer].affine.data[j, i] = torch.as_tensor(
                        [rng.uniform(8, 12), rng.uniform(-1, 1), rng.uniform(0.5, 2), 0.1])
    net = net.double()
    # Per layer, inputs and the exact node values c f(a x + b) + d summed over live edges.
    inputs = [torch.as_tensor(rng.uniform(-4, 4, size=(400, n))) for n in (2, 3)]
    tolerance = 1e-3
    terms = pykan_adapter.symbolic_terms(net)
    written = write_formulas(terms, [x.numpy() for x in inputs], 3, tolerance)
    fixed = write_formulas(terms, None, 3)
    for sym, bias, x, layer, plain in zip(net.symbolic_fun, net.node_bias, inputs, written,
                                          fixed):
        exact = np.zeros((len(x), sym.out_dim)) + bias.detach().numpy()
        for j in range(sym.out_dim):
            for i in range(sym.in_dim):
                if sym.mask[j, i]:
                    a, b, c, d = sym.affine[j, i].detach()
                    fun = SYMBOLIC_LIB[sym.funs_name[j][i]][0]
                    exact[:, j] += float(c) * fun(a * x[:, i] + b).numpy() + float(d)
        # Square edges are written expanded, as polynomial terms in x_i.
        assert not any(")**2" in text for text in layer)
        assert any("**2" in text for text in layer)
        got = ExpressionLayer.from_formulas(layer, sym.in_dim)(x.numpy())
        n_terms = sym.in_dim + 1  # inputs and the constant
        assert np.abs(got - exact).max() <= n_terms * tolerance
        # Three digits throughout would not do: the test can tell.
        rough = ExpressionLayer.from_formulas(plain, sym.in_dim)(x.numpy())
        assert np.abs(rough - exact).max() > 10 * n_terms * tolerance


def test_prior_samples_give_a_normalised_ln_prior(shared_data, tmp_path):
    """An O2 PyCBC file carries prior draws: the stored prior model integrates to one and
    follows those draws."""
    source = shared_data / "posteriors" / "o2-bbh-pe" / "gw170814_posteriors_thinned.hdf"
    names = ("mass_ratio", "chirp_mass")
    settings = CompressionSettings(
        density={"hidden": 4, "n_components": 3, "max_epochs": 25},
        prior_density={"hidden": 4, "n_components": 4, "max_epochs": 40},
        symbolic={"finetune_steps": 10, "n_fit_samples": 200},
        metric_samples=1000, c2st_samples=500,
    )
    summary = compress_file(source, tmp_path / "gw170814", names, settings=settings)
    assert summary["has_prior"]
    from gwtools.io.posteriors import read_posterior

    prior = read_posterior(source, params=names).prior_array(names)
    for source_kind in ("weights", "expressions"):
        model = load(tmp_path / "gw170814", source=source_kind)
        q_edges = np.linspace(0.0, 1.0, 201)
        m_edges = np.linspace(0.5 * prior[:, 1].min(), 1.5 * prior[:, 1].max(), 301)
        q, m = np.meshgrid(0.5 * (q_edges[1:] + q_edges[:-1]), 0.5 * (m_edges[1:] + m_edges[:-1]),
                           indexing="ij")
        density = np.exp(model.ln_prior(np.column_stack([q.ravel(), m.ravel()])))
        total = density.sum() * (q_edges[1] - q_edges[0]) * (m_edges[1] - m_edges[0])
        assert total == pytest.approx(1.0, abs=0.03)
        draws = model.transforms.inverse(model.prior.sample_unbounded(20000, np.random.default_rng(0)))
        # The posterior and prior draws differ by 0.27 bit in mass ratio, 0.74 in chirp mass.
        for j in range(2):
            assert js_divergence_1d(prior[:, j], draws[:, j]) < 0.03
        regenerated = model.sample(500, seed=1)
        assert np.all(np.isfinite(model.ln_prior(regenerated)))
