"""The compression command line: compress, regenerate, logpdf, compress-catalog, and errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from gwtools.cli import main
from gwtools.io import outputs

NAMES = ("mass_ratio", "a_1")
TINY = ["--hidden", "4", "--n-components", "2", "--max-epochs", "15", "--finetune-steps", "300",
        "--metric-samples", "1000"]


def _write_posterior(path, seed, n=1500):
    """Correlated bounded 2-D posterior: q ~ Beta(3, 3), a_1 | q ~ Beta(2 + 4 q, 4)."""
    rng = np.random.default_rng(seed)
    q = rng.beta(3.0, 3.0, n)
    a = rng.beta(2.0 + 4.0 * q, 4.0)
    np.savetxt(path, np.column_stack([q, a]), delimiter=",", header=",".join(NAMES), comments="")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    source = tmp / "posterior.csv"
    _write_posterior(source, seed=0)
    assert main(["compress", str(source), "--params", ",".join(NAMES), "--out",
                 str(tmp / "model"), *TINY]) == 0
    return tmp


def test_compress_writes_both_files(model):
    assert (model / "model.weights.npz").is_file()
    assert (model / "model.expr.json").is_file()


def test_explicit_width_replaces_the_default_width_choice(model):
    from gwtools.compression import load

    fit = load(model / "model").metadata["posterior_fit"]
    assert [c["hidden"] for c in fit["size_candidates"]] == [4]
    assert fit["config"]["hidden"] == 4 and fit["config"]["n_components"] == 2


@pytest.mark.parametrize("source", ["weights", "expressions"])
def test_regenerate_hdf5_and_csv(model, source):
    h5 = model / f"draws-{source}.h5"
    text = model / f"draws-{source}.csv"
    for out in (h5, text):
        assert main(["regenerate", str(model / "model"), "--n", "2000", "--seed", "4",
                     "--out", str(out), "--from", source]) == 0
    with h5py.File(h5, "r") as f:
        assert sorted(f) == sorted(NAMES)
        from_h5 = np.column_stack([f[n][()] for n in NAMES])
    with open(text) as handle:
        assert next(csv.reader(handle)) == list(NAMES)
    from_csv = np.loadtxt(text, delimiter=",", skiprows=1)
    np.testing.assert_allclose(from_csv, from_h5, rtol=1e-9)
    # Samples stay in the physical support and follow the source roughly (the model is tiny).
    assert np.all((from_h5 > 0) & (from_h5 < 1))
    assert from_h5[:, 0].mean() == pytest.approx(0.5, abs=0.04)


def test_logpdf_matches_python_api(model):
    from gwtools.compression import load

    points = model / "points.csv"
    _write_posterior(points, seed=9, n=200)
    out = model / "logpdf.csv"
    assert main(["logpdf", str(model / "model"), str(points), "--out", str(out)]) == 0
    values = np.loadtxt(out, delimiter=",", skiprows=1)
    expected = load(model / "model").log_prob(np.loadtxt(points, delimiter=",", skiprows=1))
    np.testing.assert_allclose(values, expected, rtol=1e-8)


def test_cli_errors_are_one_clear_line(model, capsys):
    assert main(["regenerate", str(model / "absent"), "--n", "10", "--out",
                 str(model / "x.h5")]) == 2
    assert "no compressed-posterior weights file" in capsys.readouterr().err
    assert main(["regenerate", str(model / "model"), "--n", "10", "--out",
                 str(model / "x.parquet")]) == 2
    assert "must end in" in capsys.readouterr().err
    assert main(["compress", str(model / "absent.hdf"), "--out", str(model / "m")]) == 2
    assert capsys.readouterr().err.startswith("gwtools compress: error:")
    assert main(["compress", str(model / "posterior.csv"), "--params", "chirp_mass",
                 "--out", str(model / "m")]) == 2
    assert "chirp_mass" in capsys.readouterr().err


def test_regenerate_subprocess_does_not_import_torch(model):
    script = (
        "import sys; from gwtools.cli import main; "
        f"rc = main(['regenerate', {str(model / 'model')!r}, '--n', '100', '--out', "
        f"{str(model / 'sub.csv')!r}, '--from', 'expressions']); "
        "assert rc == 0; assert 'torch' not in sys.modules and 'kan' not in sys.modules; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_compress_catalog_on_a_local_dask_cluster(tmp_path, capsys):
    from gwtools.compression import load

    catalog = tmp_path / "catalog"
    catalog.mkdir()
    _write_posterior(catalog / "event_a.csv", seed=1, n=800)
    _write_posterior(catalog / "event_b.csv", seed=2, n=800)
    (catalog / "broken.csv").write_text("mass_ratio,a_1\n0.5,1.7\n0.4,0.2\n")  # a_1 > 1
    out = tmp_path / "models"
    rc = main(["compress-catalog", str(catalog), "--out", str(out), "--workers", "1",
               "--params", ",".join(NAMES), "--hidden", "3", "--n-components", "2",
               "--max-epochs", "4", "--finetune-steps", "100", "--metric-samples", "500",
               "--output-library", "x,sin"])
    assert rc == 1  # one file failed, and says so
    with open(out / "summary.csv") as handle:
        rows = {row["file"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"event_a.csv", "event_b.csv", "broken.csv"}
    assert "a_1" in rows["broken.csv"]["error"]
    for name in ("event_a", "event_b"):
        assert rows[f"{name}.csv"]["error"] == ""
        assert (out / f"{name}.weights.npz").is_file() and (out / f"{name}.expr.json").is_file()
        fit = load(out / name).metadata["posterior_fit"]
        assert fit["symbolic_config"]["output_library"] == ["x", "sin"]
        assert fit["symbolic_config"]["finetune_steps"] == 100
    # published as one set, the summaries naming the models where they are now
    manifest = outputs.verify_result_set(out, "catalog")
    assert sorted(manifest["files"]) == ["event_a.expr.json", "event_a.weights.npz", "event_b.expr.json",
                                         "event_b.weights.npz", "summary.csv", "summary.jsonl"]
    summaries = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    assert {s.get("weights_path") for s in summaries} == {str(out / "event_a.weights.npz"),
                                                          str(out / "event_b.weights.npz"), None}
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    # a second catalog into the same folder while one is running is refused before any work
    with outputs.lock_directory(out, "running-catalog"):
        assert main(["compress-catalog", str(catalog), "--out", str(out), "--workers", "1"]) == 2
    assert "is in use by run running-catalog" in capsys.readouterr().err


def test_size_is_chosen_by_validation_loss(tmp_path):
    from gwtools.compression import load
    from gwtools.compression.catalog import CompressionSettings, compress_file

    source = tmp_path / "posterior.csv"
    _write_posterior(source, seed=3, n=1000)
    candidates = ({"hidden": 2, "n_components": 1}, {"hidden": 6, "n_components": 3})
    settings = CompressionSettings(
        density={"max_epochs": 12}, size_candidates=candidates, size_tolerance=0.0,
        symbolic={"finetune_steps": 2, "n_fit_samples": 100}, metric_samples=300,
        c2st_samples=200,
    )
    compress_file(source, tmp_path / "m", NAMES, settings=settings)
    info = load(tmp_path / "m").metadata["posterior_fit"]
    losses = [c["validation_loss"] for c in info["size_candidates"]]
    assert len(losses) == 2
    chosen = candidates[int(np.argmin(losses))]
    assert info["config"]["hidden"] == chosen["hidden"]
    # The formulas come from a second fit with a five-interval output layer and width 12.
    assert info["config"]["output_grid"] == 1
    assert info["symbolic_source_config"] == {**info["config"], "output_grid": 5, "hidden": 12}
    formulas = load(tmp_path / "m", source="expressions")
    assert len(formulas.density.layers[0].formulas) == 12
    assert np.isfinite(formulas.log_prob(formulas.sample(50, seed=1))).all()
    with np.load(tmp_path / "m.weights.npz") as arrays:
        assert arrays["posterior_layer1_coef"].shape[1] == 1 + 3  # G + 3 coefficients
        assert arrays["posterior_layer0_coef"].shape[1] == 5 + 3


def test_regenerate_takes_float_notation_and_streams_in_chunks(model, capsys):
    from gwtools.compression import load

    h5, text = model / "stream.h5", model / "stream.csv"
    assert main(["regenerate", str(model / "model"), "--n", "5e4", "--seed", "2",
                 "--out", str(h5)]) == 0
    assert main(["regenerate", str(model / "model"), "--n", "50000", "--seed", "2",
                 "--chunk-size", "1e3", "--out", str(text)]) == 0
    expected = load(model / "model").sample(50000, seed=2)
    with h5py.File(h5, "r") as f:
        np.testing.assert_array_equal(np.column_stack([f[n][()] for n in NAMES]), expected)
    np.testing.assert_allclose(np.loadtxt(text, delimiter=",", skiprows=1), expected, rtol=1e-9)
    for bad in ("1.5", "0", "-2", "1e9x", "nan", "inf"):
        with pytest.raises(SystemExit):
            main(["regenerate", str(model / "model"), "--n", bad, "--out", str(h5)])
        assert "is not a positive whole number" in capsys.readouterr().err
    # Far more than any disk holds: refused before anything is drawn, in one line.
    assert main(["regenerate", str(model / "model"), "--n", "1e15", "--out",
                 str(model / "huge.h5")]) == 2
    err = capsys.readouterr().err
    assert "needs about 1.6e+07 GB for 2,000,000,000,000,000 values" in err
    assert err.count("\n") == 1 and not (model / "huge.h5").exists()


def test_edited_models_need_no_verify_or_restamp(model, tmp_path, capsys):
    import json

    edited = tmp_path / "m.expr.json"
    raw = json.loads((model / "model.expr.json").read_text())
    raw["posterior"]["layers"][1][1] = raw["posterior"]["layers"][1][1] + "+0.5"
    edited.write_text(json.dumps(raw))
    out = tmp_path / "draws.csv"
    assert main(["regenerate", str(edited), "--n", "100", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "does not match its content checksum" in err and "gwtools restamp" in err
    assert err.count("\n") == 1 and not out.exists()
    assert main(["regenerate", str(edited), "--n", "100", "--out", str(out), "--no-verify"]) == 0
    assert main(["logpdf", str(edited), str(out), "--out", str(tmp_path / "lp.csv"),
                 "--no-verify"]) == 0
    assert main(["restamp", str(edited)]) == 0
    assert "sha256:" in capsys.readouterr().out
    assert main(["regenerate", str(edited), "--n", "100", "--out", str(out)]) == 0


def test_too_few_samples_are_refused_quoting_the_given_count(tmp_path, capsys, caplog):
    from gwtools.compression.catalog import CompressionSettings, compress_file

    for n in (20, 30):
        _write_posterior(tmp_path / f"p{n}.csv", seed=1, n=n)
        with pytest.raises(ValueError, match=rf"p{n}\.csv has {n} posterior samples; "
                                             "compression needs at least 100"):
            compress_file(tmp_path / f"p{n}.csv", tmp_path / "m", NAMES)
    assert main(["compress", str(tmp_path / "p30.csv"), "--params", ",".join(NAMES), "--out",
                 str(tmp_path / "m")]) == 2
    assert "p30.csv has 30 posterior samples" in capsys.readouterr().err
    _write_posterior(tmp_path / "p300.csv", seed=1, n=300)
    settings = CompressionSettings(
        density={"hidden": 3, "n_components": 2, "max_epochs": 3}, size_candidates=(),
        symbolic_density={}, symbolic={"finetune_steps": 2, "n_fit_samples": 100},
        metric_samples=300, c2st_samples=300)
    with caplog.at_level("WARNING", logger="gwtools.compression.catalog"):
        compress_file(tmp_path / "p300.csv", tmp_path / "m", NAMES, settings=settings)
    assert ("p300.csv has 300 posterior samples, fewer than the 2000 recommended" in caplog.text
            and "from 60 held-out samples, C2ST from 300 samples per class" in caplog.text)
