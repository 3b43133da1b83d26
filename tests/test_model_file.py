"""Numpy-only evaluation of compressed posteriors: MADE masks, densities against closed forms,
ancestral sampling, file round trips, checksums, errors, and no torch import."""

from __future__ import annotations

import hashlib
import io
import json
import math
import subprocess
import sys
import textwrap
import tracemalloc
from dataclasses import replace

import h5py
import numpy as np
import pytest
from scipy import stats

from gwtools.compression import load, mixture
from gwtools.compression.layers import ExpressionLayer
from gwtools.compression.mixture import MixtureDensity, made_masks
from gwtools.compression.model_file import (
    FORMAT_VERSION,
    DensityHeader,
    ModelHeader,
    posterior_from_expressions,
    posterior_from_weights,
    restamp,
    write_expressions,
    write_weights,
)
from gwtools.compression.tables import write_samples
from gwtools.compression.transforms import TransformStack


def test_made_masks_are_autoregressive():
    d, hidden, k = 4, 7, 2
    mask_in, mask_out = made_masks(d, hidden, k)
    # Brute force: output block j may reach input i only through a path, and only if i < j.
    reach = (mask_in.astype(int) @ mask_out.astype(int)) > 0  # (d, d * 3k)
    for i in range(d):
        for j in range(d):
            block = reach[i, j * 3 * k : (j + 1) * 3 * k]
            if i >= j:
                assert not block.any()
    # Every dimension but the first is conditioned on the one before it.
    for j in range(1, d):
        assert reach[j - 1, j * 3 * k]


# An autoregressive Gaussian written as formulas: z0 ~ N(0.5, 1.2^2), z1 | z0 ~ N(0.8 z0, 0.6^2);
# one hidden unit copies z0.  Its joint is a bivariate normal with known mean and covariance.
_MEAN = np.array([0.5, 0.4])
_COV = np.array([[1.44, 0.8 * 1.44], [0.8 * 1.44, 0.64 * 1.44 + 0.36]])


def _gaussian_header(names=("mass_ratio", "a_1"), shift=(0.0, 0.0)):
    part = DensityHeader(
        n_dim=2, hidden=1, n_components=1, mean=shift, scale=(1.0, 1.0),
        layers=(("x0",), ("0", "0.5", repr(math.log(1.2)), "0", "0.8*x0", repr(math.log(0.6)))),
    )
    return ModelHeader(names, TransformStack.default(names), part, metadata={"note": "test"})


def test_expression_density_equals_closed_form(tmp_path):
    write_expressions(tmp_path / "m.expr.json", _gaussian_header())
    model = load(tmp_path / "m.expr.json")
    y = np.random.default_rng(1).normal(size=(200, 2)) * 2
    expected = stats.multivariate_normal(_MEAN, _COV).logpdf(y)
    np.testing.assert_allclose(model.density.log_prob_unbounded(y), expected, rtol=1e-10)
    draws = model.density.sample_unbounded(40000, np.random.default_rng(2))
    np.testing.assert_allclose(draws.mean(axis=0), _MEAN, atol=0.03)
    np.testing.assert_allclose(np.cov(draws.T), _COV, atol=0.05)


def test_log_prob_in_physical_parameters_integrates_to_one(tmp_path):
    """The logit Jacobians make exp(log_prob) a density on the unit square."""
    write_expressions(tmp_path / "m.expr.json", _gaussian_header())
    model = load(tmp_path / "m.expr.json")
    edges = np.linspace(0.0, 1.0, 801)
    centres = 0.5 * (edges[1:] + edges[:-1])
    q, a = np.meshgrid(centres, centres, indexing="ij")
    density = np.exp(model.log_prob(np.column_stack([q.ravel(), a.ravel()])))
    assert density.sum() * (edges[1] - edges[0]) ** 2 == pytest.approx(1.0, abs=2e-3)
    # Outside the support the density is zero, not an error.
    assert np.all(model.log_prob(np.array([[1.2, 0.5], [0.5, -0.1]])) == -np.inf)
    assert model.log_prob({"mass_ratio": [0.5], "a_1": [0.5]}).shape == (1,)


def _random_weights(rng, d=3, hidden=5, k=2, grid=4, names=("chirp_mass", "mass_ratio", "tilt_1"),
                    mean=(3.4, 0.5, 0.1), scale=(0.1, 1.0, 1.0)):
    mask_in, mask_out = made_masks(d, hidden, k)
    arrays = {}
    for index, mask in enumerate((mask_in, mask_out)):
        n_in, n_out = mask.shape
        key = f"posterior_layer{index}_"
        arrays[key + "grid_lo"] = np.full(n_in, -2.0, dtype=np.float32)
        arrays[key + "grid_step"] = np.full(n_in, 4.0 / grid, dtype=np.float32)
        arrays[key + "coef"] = (0.3 * rng.normal(size=(mask.sum(), grid + 3))).astype(np.float16)
        arrays[key + "scale_base"] = (0.3 * rng.normal(size=mask.sum())).astype(np.float16)
        arrays[key + "bias"] = (0.1 * rng.normal(size=n_out)).astype(np.float32)
    header = ModelHeader(
        names, TransformStack.default(names),
        DensityHeader(n_dim=d, hidden=hidden, n_components=k, mean=mean, scale=scale),
        metadata={"source_sha256": "0" * 64},
    )
    return header, arrays


def test_weights_round_trip_and_seeded_sampling(tmp_path):
    header, arrays = _random_weights(np.random.default_rng(3))
    size = write_weights(tmp_path / "m.weights.npz", header, arrays)
    assert size == (tmp_path / "m.weights.npz").stat().st_size
    in_memory = posterior_from_weights(header, arrays)
    loaded = load(tmp_path / "m")
    assert loaded.parameters == ("chirp_mass", "mass_ratio", "tilt_1")
    assert loaded.metadata["source_sha256"] == "0" * 64
    a, b = in_memory.sample(5000, seed=7), loaded.sample(5000, seed=7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, loaded.sample(5000, seed=8))
    assert np.all(np.isfinite(loaded.log_prob(a)))
    with pytest.raises(ValueError, match="stores no prior"):
        loaded.ln_prior(a)


def test_sampling_follows_the_density_of_a_random_network(tmp_path):
    """Independent check of ancestral sampling against the density: 1-D conditional
    histograms of the samples versus the normalised density on a grid (d = 2)."""
    rng = np.random.default_rng(4)
    header, arrays = _random_weights(rng, d=2, hidden=3, k=3, grid=3, names=("x", "y"),  # identity
                                     mean=(0.0, 0.0), scale=(1.0, 1.0))
    model = posterior_from_weights(header, arrays)
    draws = model.sample(200000, seed=5)
    edges = np.linspace(-6, 6, 121)
    centres = 0.5 * (edges[1:] + edges[:-1])
    gx, gy = np.meshgrid(centres, centres, indexing="ij")
    p = np.exp(model.log_prob(np.column_stack([gx.ravel(), gy.ravel()]))).reshape(gx.shape)
    cell = (edges[1] - edges[0]) ** 2
    assert p.sum() * cell == pytest.approx(1.0, abs=5e-3)
    hist, _, _ = np.histogram2d(draws[:, 0], draws[:, 1], bins=[edges, edges])
    expected = p * cell * len(draws)
    big = expected > 50
    pulls = (hist[big] - expected[big]) / np.sqrt(expected[big])
    assert np.abs(pulls).max() < 5.5
    assert abs(pulls.mean()) < 0.2


def _random_formulas(rng, d, hidden, k):
    """Formula layers on the MADE masks, each live edge linear, quadratic or a tanh."""
    layers = []
    for index, mask in enumerate(made_masks(d, hidden, k)):
        scale = 0.4 if index == 0 else 0.15
        layer = []
        for node in range(mask.shape[1]):
            terms = [f"{rng.normal(scale=0.1):.4f}"]
            for i in np.flatnonzero(mask[:, node]):
                c, a, b = rng.normal(scale=scale), rng.normal(), rng.normal()
                terms.append((f"{c:.4f}*x{i}", f"{c:.4f}*x{i}**2",
                              f"{c:.4f}*tanh({a:.4f}*x{i}+{b:.4f})")[rng.integers(3)])
            layer.append("+".join(terms).replace("+-", "-"))
        layers.append(layer)
    return layers


@pytest.mark.parametrize("source", ["weights", "expressions"])
def test_ancestral_sampling_matches_a_full_network_pass(monkeypatch, source):
    """The incremental sampler (hidden units reordered by degree, features stored by rows)
    against a brute-force redraw: the full float64 network at each sample's own earlier
    coordinates, the same uniform and normal draws, component by cumulative weight.

    Small blocks (1024 draws) make the sampler reuse its work buffers from block to block
    and end on a partial block, as it does for large ``n``."""
    monkeypatch.setattr(mixture, "_BLOCK", 1024)
    d, k, hidden = 5, 3, 7
    rng = np.random.default_rng(6)
    header, arrays = _random_weights(rng, d=d, hidden=hidden, k=k, grid=4,
                                     names=("a", "b", "c", "e", "f"), mean=(0.0,) * d,
                                     scale=(1.0,) * d)
    if source == "weights":
        density = posterior_from_weights(header, arrays).density
    else:
        part = replace(header.posterior, layers=_random_formulas(rng, d, hidden, k))
        density = posterior_from_expressions(replace(header, posterior=part)).density
    n = 3000
    draws = density.sample_unbounded(n, np.random.default_rng(9))
    rng = np.random.default_rng(9)
    uniform = rng.random((d, n), dtype=np.float32).T
    normal = rng.standard_normal((d, n), dtype=np.float32).T
    out = np.array(draws)
    for layer in density.layers:
        out = layer(out)
    out = out.reshape(n, d, 3, k)
    weights = np.exp(out[:, :, 0] - out[:, :, 0].max(axis=-1, keepdims=True))
    cumulative = np.cumsum(weights, axis=-1) / weights.sum(axis=-1, keepdims=True)
    comp = (cumulative < uniform[:, :, None]).sum(axis=-1)
    picked = np.take_along_axis(out, comp[:, :, None, None], axis=-1)[..., 0]
    expected = picked[:, :, 1] + np.exp(np.clip(picked[:, :, 2], -7.0, 1.0)) * normal
    close = np.isclose(draws, expected, rtol=1e-4, atol=1e-4)
    # A float32 rounding may flip a component exactly at a boundary: at most a handful.
    assert close.mean() > 0.999
    assert draws.std(axis=0).min() > 0.1  # not a degenerate network


def test_expression_file_round_trip_same_seed(tmp_path):
    header = _gaussian_header()
    write_expressions(tmp_path / "g.expr.json", header)
    first = load(tmp_path / "g", source="expressions")
    second = load(tmp_path / "g.expr.json")
    np.testing.assert_array_equal(first.sample(1000, seed=3), second.sample(1000, seed=3))
    assert first.source == "expressions"


def _edited(path, edit):
    """Write the Gaussian expressions file at ``path``, then change its JSON with ``edit``
    (the stored checksum goes stale)."""
    write_expressions(path, _gaussian_header())
    header = json.loads(path.read_text())
    edit(header)
    path.write_text(json.dumps(header))
    return path


def test_bad_files_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="gwtools compress"):
        load(tmp_path / "missing")
    with pytest.raises(ValueError, match="source"):
        load(tmp_path / "missing", source="pickle")
    (tmp_path / "bad.expr.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a gwtools KAN expressions file"):
        load(tmp_path / "bad.expr.json")
    header = _gaussian_header()
    write_expressions(tmp_path / "v.expr.json", header)
    text = (tmp_path / "v.expr.json").read_text().replace(
        f'"format_version":{FORMAT_VERSION}', '"format_version":99')
    (tmp_path / "v.expr.json").write_text(text)
    with pytest.raises(ValueError, match="format version 99"):
        load(tmp_path / "v.expr.json")
    # Files edited by hand: the checksum no longer matches, and with verify=False the
    # header is still checked against the network.
    # The first dimension's mean may not depend on anything: a formula that does breaks
    # the autoregressive order.
    cheat = _edited(tmp_path / "cheat.expr.json", lambda h: h["posterior"]["layers"][1].__setitem__(
        1, "0.5 + 0.1*x0"))
    with pytest.raises(ValueError, match=r"node 1 uses inputs \[0\]"):
        load(cheat, verify=False)
    short = _edited(tmp_path / "short.expr.json", lambda h: h["posterior"]["layers"][1].pop())
    with pytest.raises(ValueError, match="5 formulas, expected 6"):
        load(short, verify=False)
    evil = _edited(tmp_path / "evil.expr.json", lambda h: h["posterior"]["layers"][1].__setitem__(
        1, "__import__('os')"))
    with pytest.raises(ValueError, match="unsupported expression element"):
        load(evil, verify=False)
    (tmp_path / "junk.weights.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="junk.weights.npz"):
        load(tmp_path / "junk.weights.npz")
    model = ExpressionLayer.from_formulas(["x0"], 1)
    assert model.n_out == 1
    good = posterior_from_weights(*_random_weights(np.random.default_rng(0)))
    with pytest.raises(ValueError, match="3 parameters"):
        good.log_prob(np.zeros((2, 2)))
    with pytest.raises(KeyError, match="tilt_1"):
        good.log_prob({"chirp_mass": [30.0], "mass_ratio": [0.5]})
    assert isinstance(good.density, MixtureDensity)


def test_regeneration_imports_neither_torch_nor_pykan(tmp_path):
    header, arrays = _random_weights(np.random.default_rng(5))
    write_weights(tmp_path / "m.weights.npz", header, arrays)
    write_expressions(tmp_path / "g.expr.json", _gaussian_header())
    script = textwrap.dedent(
        f"""
        import sys
        import gwtools.compression as compression
        weights = compression.load({str(tmp_path / "m")!r})
        x = weights.sample(1000, seed=1)
        assert weights.log_prob(x).shape == (1000,)
        expressions = compression.load({str(tmp_path / "g")!r}, source="expressions")
        y = expressions.sample(1000, seed=1)
        assert expressions.log_prob(y).shape == (1000,)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "kan", "sympy"))
        assert not heavy, heavy
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_stored_checksum_is_the_sha256_of_the_canonical_content(tmp_path):
    """The checksum is SHA-256 over the header JSON with sorted keys and no spaces (the
    checksum left out), then each array's name, dtype, shape and bytes in name order."""
    path = tmp_path / "g.expr.json"
    write_expressions(path, _gaussian_header())
    raw = json.loads(path.read_text())
    body = {k: v for k, v in raw.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert raw["checksum"] == "sha256:" + hashlib.sha256(text).hexdigest()
    assert raw["format_version"] == FORMAT_VERSION == 2
    header, arrays = _random_weights(np.random.default_rng(3))
    write_weights(tmp_path / "m.weights.npz", header, arrays)
    with np.load(tmp_path / "m.weights.npz") as f:
        stored = {k: f[k] for k in f.files}
    raw = json.loads(stored.pop("header").tobytes())
    digest = hashlib.sha256(json.dumps({k: v for k, v in raw.items() if k != "checksum"},
                                       sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(stored):
        digest.update(f"\n{name}:{stored[name].dtype.str}:{list(stored[name].shape)}\n".encode())
        digest.update(stored[name].tobytes())
    assert raw["checksum"] == "sha256:" + digest.hexdigest()


def test_edited_files_are_refused_until_restamped(tmp_path, caplog):
    """One constant edited in an expressions file used to move a mean silently."""
    path = tmp_path / "g.expr.json"
    write_expressions(path, _gaussian_header())
    draws = load(path).density.sample_unbounded(20000, np.random.default_rng(0))
    assert draws[:, 0].mean() == pytest.approx(0.5, abs=0.05)
    raw = json.loads(path.read_text())
    raw["posterior"]["layers"][1][1] = "0.9"  # the mean of the first dimension
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"g\.expr\.json does not match its content checksum.*"
                                         r"gwtools restamp .*g\.expr\.json.*verify=False"):
        load(path)
    with caplog.at_level("WARNING", logger="gwtools.compression.model_file"):
        edited = load(path, verify=False)
    assert "does not match its content checksum; loaded anyway" in caplog.text
    draws = edited.density.sample_unbounded(20000, np.random.default_rng(0))
    assert draws[:, 0].mean() == pytest.approx(0.9, abs=0.05)
    checksum = restamp(path)
    assert checksum == json.loads(path.read_text())["checksum"] != raw["checksum"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="gwtools.compression.model_file"):
        accepted = load(path)
    assert not caplog.records
    np.testing.assert_array_equal(accepted.sample(100, seed=1), edited.sample(100, seed=1))
    with pytest.raises(ValueError, match="not a model file"):
        restamp(tmp_path / "g")
    # A weights file with one bias changed.
    header, arrays = _random_weights(np.random.default_rng(3))
    weights = tmp_path / "m.weights.npz"
    write_weights(weights, header, arrays)
    with np.load(weights) as f:
        stored = {k: f[k] for k in f.files}
    stored["posterior_layer1_bias"] = stored["posterior_layer1_bias"] + np.float32(0.01)
    np.savez_compressed(weights, **stored)
    with pytest.raises(ValueError, match=r"m\.weights\.npz does not match its content checksum"):
        load(weights)
    restamp(weights)
    assert np.isfinite(load(weights).log_prob(load(weights).sample(10, seed=1))).all()


def test_header_is_checked_against_the_network(tmp_path):
    """Parameters, transforms, bounds and sizes must agree with the network, whether or not
    the checksum is verified (a 6-D model with 5 names used to drop a column)."""
    cut = _edited(tmp_path / "cut.expr.json",
                  lambda h: (h["parameters"].pop(), h["transforms"]["transforms"].pop()))
    with pytest.raises(ValueError, match="checksum"):
        load(cut)
    with pytest.raises(ValueError, match=r"cut\.expr\.json: the header lists 1 parameters "
                                         r"\['mass_ratio'\], but the posterior network models 2"):
        load(cut, verify=False)
    renamed = _edited(tmp_path / "renamed.expr.json", lambda h: h["parameters"].__setitem__(1, "a_2"))
    with pytest.raises(ValueError, match=r"transforms are for \['mass_ratio', 'a_1'\]"):
        load(renamed, verify=False)
    wide = _edited(tmp_path / "wide.expr.json",
                   lambda h: h["transforms"]["transforms"][1].__setitem__("upper", 2.0))
    with pytest.raises(ValueError, match=r"logit transform of 'a_1' spans \[0.0, 2.0\], outside "
                                         r"the parameter's physical support \[0.0, 1.0\]"):
        load(wide, verify=False)
    short_mean = _edited(tmp_path / "mean.expr.json", lambda h: h["posterior"]["mean"].pop())
    with pytest.raises(ValueError, match="posterior density: mean has 1 entries for n_dim = 2"):
        load(short_mean, verify=False)
    header, arrays = _random_weights(np.random.default_rng(3))
    missing = {k: v for k, v in arrays.items() if k != "posterior_layer0_bias"}
    with pytest.raises(ValueError, match=r"\['posterior_layer0_bias'\] are missing"):
        write_weights(tmp_path / "x.weights.npz", header, missing)
    short = {**arrays, "posterior_layer1_bias": arrays["posterior_layer1_bias"][:-1]}
    with pytest.raises(ValueError, match=r"posterior_layer1_bias has shape \(17,\), expected \(18,\)"):
        posterior_from_weights(header, short)
    stray = {**arrays, "prior_layer0_bias": arrays["posterior_layer0_bias"]}
    with pytest.raises(ValueError, match="belong to no density"):
        posterior_from_weights(header, stray)
    assert not (tmp_path / "x.weights.npz").exists()


def test_version_1_files_load_with_a_warning(tmp_path, caplog):
    path = tmp_path / "old.expr.json"
    write_expressions(path, _gaussian_header())
    raw = json.loads(path.read_text())
    raw["format_version"] = 1
    del raw["checksum"]
    path.write_text(json.dumps(raw))
    with caplog.at_level("WARNING", logger="gwtools.compression.model_file"):
        old = load(path)
    assert "cannot be verified" in caplog.text and "gwtools restamp" in caplog.text
    restamp(path)
    assert json.loads(path.read_text())["format_version"] == FORMAT_VERSION
    caplog.clear()
    with caplog.at_level("WARNING", logger="gwtools.compression.model_file"):
        stamped = load(path)
    assert not caplog.records
    np.testing.assert_array_equal(stamped.sample(100, seed=2), old.sample(100, seed=2))
    raw["format_version"] = FORMAT_VERSION
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="has no content checksum"):
        load(path)


def test_streamed_tables_hold_the_one_shot_samples(tmp_path, caplog):
    """Chunks of 999 samples (the generator's blocks are 32768) give the samples of one
    ``sample`` call, in HDF5 and in CSV, with ln_prior; no temporary file is left."""
    prior = _gaussian_header(shift=(0.3, -0.2)).posterior
    model = posterior_from_expressions(replace(_gaussian_header(), prior=prior))
    n = 70_000
    expected = model.sample(n, seed=4)
    ln_prior = model.ln_prior(expected)
    for suffix in (".h5", ".csv"):
        with caplog.at_level("INFO", logger="gwtools.compression.tables"):
            write_samples(model, n, tmp_path / f"s{suffix}", seed=4, chunk_size=999)
        assert f"wrote {n:,} samples from the expressions file" in caplog.text
        assert "samples/s" in caplog.text
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert sorted(f) == ["a_1", "ln_prior", "mass_ratio"]
        np.testing.assert_array_equal(np.column_stack([f["mass_ratio"][()], f["a_1"][()]]), expected)
        np.testing.assert_array_equal(f["ln_prior"][()], ln_prior)
    one_shot = io.StringIO()
    np.savetxt(one_shot, np.column_stack([expected, ln_prior]), delimiter=",",
               header="mass_ratio,a_1,ln_prior", comments="", fmt="%.10g")
    assert (tmp_path / "s.csv").read_text() == one_shot.getvalue()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv", "s.h5"]


def test_streaming_memory_does_not_grow_with_the_sample_count(tmp_path):
    model = posterior_from_expressions(_gaussian_header())
    peaks = []
    for n in (50_000, 800_000):
        tracemalloc.start()
        write_samples(model, n, tmp_path / "s.h5", seed=1, chunk_size=10_000)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.2 * peaks[0]
    assert peaks[1] < 800_000 * 2 * 8 / 4  # a quarter of the samples themselves
