"""A tiny end-to-end ringdown run on the shipped GW150914 data, through the command line."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import astropy.constants as const
import bilby
import numpy as np
import pytest
import qnm
from helpers import TINY_RUN_TOML

from gwtools.cli import main
from gwtools.io import outputs
from gwtools.ringdown.results import credible_interval, output_worker, read_result, write_result


@pytest.fixture(scope="module")
def tiny_run(project_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ringdown")
    config = out / "tiny.toml"
    config.write_text(TINY_RUN_TOML.format(data=project_data / "GW150914", out=out / "results"))
    # the command line lowers nlive (and checks --set reaches the recorded configuration)
    assert main(["ringdown", str(config), "--quiet", "--set", "sampler.nlive=40"]) == 0
    return config, out / "results"


def test_outputs_are_written(tiny_run):
    _, out = tiny_run
    label = "GW150914_220+221"
    for suffix in (".h5", "_bilby.hdf5", "_summary.md", "_remnant.png", "_amplitudes.png",
                   "_whitened.png", "_qnm.png", "_noise_H1.png", "_noise_L1.png"):
        assert (out / f"{label}{suffix}").is_file(), suffix
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / f"{label}_summary.md").read_text()
    assert "physical" in summary and "final_mass" in summary and f"{label}_remnant.png" in summary


def test_outputs_are_one_published_set_with_the_run_id_on_each(tiny_run):
    from PIL import Image

    _, out = tiny_run
    label = "GW150914_220+221"
    manifest = outputs.verify_result_set(out, label)
    assert sorted(manifest["files"]) == sorted(
        f"{label}{suffix}" for suffix in (".h5", "_bilby.hdf5", "_summary.md", "_remnant.png",
                                          "_amplitudes.png", "_whitened.png", "_qnm.png",
                                          "_noise_H1.png", "_noise_L1.png"))
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"]
    run_id = manifest["run_id"]
    assert read_result(out / f"{label}.h5").run_id == run_id
    assert f"| run id | {run_id} |" in (out / f"{label}_summary.md").read_text()
    assert bilby.core.result.read_in_result(str(out / f"{label}_bilby.hdf5")).meta_data["run_id"] == run_id
    for png in out.glob("*.png"):
        assert Image.open(png).text["Comment"] == f"gwtools run {run_id}"
    # nothing left behind: no lock, no staging folder, no temporary file
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_a_second_run_into_the_directory_is_refused(tiny_run, capsys):
    config, out = tiny_run
    before = outputs.read_manifest(out, "GW150914_220+221")
    with outputs.lock_directory(out, "first-run"):
        assert main(["ringdown", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"is in use by run first-run (pid {os.getpid()} on {socket.gethostname()}, started " in err
    assert outputs.read_manifest(out, "GW150914_220+221") == before


def published_copy(out, tmp_path):
    """A copy of the tiny run's published set, and its manifest as read back."""
    copy = tmp_path / "results"
    shutil.copytree(out, copy)
    return copy, outputs.verify_result_set(copy, "GW150914_220+221")


def test_a_failure_between_writes_keeps_the_published_set(tiny_run, tmp_path, monkeypatch):
    from gwtools.ringdown import pipeline

    config, out = tiny_run
    copy, before = published_copy(out, tmp_path)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    # the .h5 is written, then the bilby JSON fails
    monkeypatch.setattr(pipeline, "save_bilby_result", broken)
    with pytest.raises(OSError, match="disk full"):
        main(["ringdown", str(config), "--resume", "--quiet", "--no-plots", "--output", str(copy),
              "--set", "sampler.nlive=40"])
    assert outputs.verify_result_set(copy, "GW150914_220+221") == before
    assert not [p.name for p in copy.iterdir() if p.name.startswith(".")]
    # a results file of another run beside the published set is refused when read
    result = read_result(copy / "GW150914_220+221.h5")
    write_result(result, copy / "GW150914_220+221.h5")
    with pytest.raises(ValueError, match="mixes outputs of different runs"):
        read_result(copy / "GW150914_220+221.h5")


def test_noise_model_and_its_checks_are_recorded(tiny_run):
    _, out = tiny_run
    result = read_result(out / "GW150914_220+221.h5")
    summary = (out / "GW150914_220+221_summary.md").read_text()
    for detector in ("H1", "L1"):
        arrays = result.noise[detector]
        # the ACF used is the transform of the recorded PSD; 0.05 s at 1024 Hz
        assert arrays["acf"].shape == (51,) and arrays["frequency"][-1] == 512.0
        diag = result.diagnostics
        # Welch from [-14, -1] s in 4 s segments: 5 of them, 46% scatter per bin
        assert diag[f"noise_{detector}_welch_segments"] == 5
        assert diag[f"noise_{detector}_psd_relative_std"] == pytest.approx(0.46, abs=0.01)
        assert diag[f"noise_{detector}_whitened_variance"] == pytest.approx(1.0, abs=0.05)
        assert diag[f"noise_{detector}_loud_stretches"] == 0
        assert f"| noise {detector} | Welch mean of 5 segments of 4 s from [-14, -1] s" in summary


def test_times_are_resolved_from_the_h1_peak(tiny_run):
    _, out = tiny_run
    resolved = read_result(out / "GW150914_220+221.h5").config["resolved"]
    # Isi et al. 2019 analyse GW150914 from geocentre GPS 1126259462.4083 (t_H1 = ...462.423)
    assert resolved["peak_geocenter_gps"] == pytest.approx(1126259462.4083, abs=1e-4)
    # back in H1 the start (at the peak) is the configured H1 time
    assert resolved["start_times_gps"]["H1"] == pytest.approx(1126259462.423, abs=1e-7)
    # L1 sees GW150914 about 7 ms before H1 (Abbott et al. 2016, PRL 116, 061102)
    lag = resolved["start_times_gps"]["H1"] - resolved["start_times_gps"]["L1"]
    assert lag == pytest.approx(0.0069, abs=0.0005)


def test_result_records_provenance(tiny_run, project_data):
    config_path, out = tiny_run
    result = read_result(out / "GW150914_220+221.h5")
    for path, digest in result.checksums.items():
        with open(path, "rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == digest
    assert len(result.checksums) == 2
    assert result.config["sampler"]["nlive"] == 40
    assert result.config["model"]["modes"] == ["220", "221"]
    assert json.dumps(result.config)  # plain data
    assert {"gwtools", "jax", "dynesty", "bilby", "numpy"} <= set(result.versions)
    assert result.search_parameters == ("final_mass", "final_spin")
    assert result.diagnostics["ncall"] > 0 and result.diagnostics["importance_ess"] > 0


def test_derived_qnm_columns_match_the_qnm_package(tiny_run):
    _, out = tiny_run
    post = read_result(out / "GW150914_220+221.h5").posterior
    t_sun = (const.G * const.M_sun / const.c**3).to_value("s")
    for mode, n in (("220", 0), ("221", 1)):
        sequence = qnm.modes_cache(s=-2, l=2, m=2, n=n)
        for i in (0, 7, 19):
            omega = sequence(a=float(post["final_spin"][i]))[0]
            mass_s = post["final_mass"][i] * t_sun
            assert post[f"frequency_{mode}"][i] == pytest.approx(omega.real / (2 * np.pi * mass_s), rel=1e-4)
            assert post[f"damping_time_{mode}"][i] == pytest.approx(-mass_s / omega.imag, rel=1e-4)


def test_signal_is_found_and_remnant_overlaps_imr(tiny_run, project_data):
    import h5py

    _, out = tiny_run
    result = read_result(out / "GW150914_220+221.h5")
    ln_z, ln_z_err = result.log_evidence["physical"]
    assert np.isfinite(ln_z) and 0 < ln_z_err < 5
    # GW150914's ringdown is loud: far more evidence than pure noise
    assert ln_z - result.diagnostics["log_noise_evidence"] > 10
    with h5py.File(project_data / "GW150914" / "imr_remnant_samples.h5") as f:
        imr_mass = f["final_mass"][()]
    _, lo, hi = credible_interval(result.posterior["final_mass"])
    assert lo < np.median(imr_mass) < hi
    assert np.all(result.posterior["amplitude_220"] <= 20.0)  # the physical prior's edge, 1e-21


def test_bilby_file_holds_the_same_posterior(tiny_run):
    _, out = tiny_run
    result = read_result(out / "GW150914_220+221.h5")
    back = bilby.core.result.read_in_result(str(out / "GW150914_220+221_bilby.hdf5"))
    np.testing.assert_allclose(back.posterior["final_mass"].to_numpy(), result.posterior["final_mass"])
    assert back.log_evidence == pytest.approx(result.log_evidence["physical"][0])
    assert back.log_noise_evidence == pytest.approx(result.diagnostics["log_noise_evidence"])


def test_bad_config_is_one_clear_line(tmp_path, capsys, project_data):
    config = tmp_path / "bad.toml"
    text = TINY_RUN_TOML.format(data=project_data / "GW150914", out=tmp_path)
    config.write_text(text.replace("final_mass = [35.0, 140.0]", "final_mass = [35.0, 140.0]\nfinal_spin = [0.0, 1.2]"))
    assert main(["ringdown", str(config)]) == 2
    assert "[prior] final_spin: upper bound 1.2 > 0.99" in capsys.readouterr().err
    assert main(["ringdown", str(config), "--set", "nlive=10"]) == 2
    assert "expected SECTION.KEY=VALUE" in capsys.readouterr().err
    # the data start 15.4 s before the peak: a longer off-source window cannot be cut
    config.write_text(text.replace("[analysis]", "[noise]\noffsource = [-20.0, -1.0]\n[analysis]"))
    assert main(["ringdown", str(config)]) == 2
    assert "[noise] offsource: window [-20.0, -1.0] s" in capsys.readouterr().err


def test_resume_from_the_checkpoint_of_a_finished_run(tiny_run, caplog):
    config, out = tiny_run
    before = read_result(out / "GW150914_220+221.h5")
    assert (out / "GW150914_220+221_checkpoint.npz").is_file()
    # the run that held the directory was killed: its lock is stale
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from gwtools.io.outputs import lock_directory\n"
         "with lock_directory(sys.argv[1], 'killed-run'):\n print('locked', flush=True); time.sleep(60)",
         str(out)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert holder.stdout.readline().strip() == "locked"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with caplog.at_level(logging.WARNING, logger="gwtools.io.outputs"):
        assert main(["ringdown", str(config), "--resume", "--quiet", "--no-plots",
                     "--set", "sampler.nlive=40"]) == 0
    assert any("taking over the lock of run killed-run" in r.getMessage() for r in caplog.records)
    after = read_result(out / "GW150914_220+221.h5")
    # nothing left to sample: the restored run gives the same evidence and calls
    assert after.log_evidence["flat"] == before.log_evidence["flat"]
    assert after.diagnostics["ncall"] == before.diagnostics["ncall"]
    # ... because it was restored, not run again: every call was made before it resumed
    assert after.diagnostics["ncall_resumed"] == before.diagnostics["ncall"] > 0
    assert before.diagnostics["ncall_resumed"] == 0


def test_a_stopped_run_resumes_from_its_checkpoint(tiny_run, tmp_path, capsys):
    config, out = tiny_run
    label = "GW150914_220+221"
    full = read_result(out / f"{label}.h5")
    args = ["ringdown", str(config), "--quiet", "--no-plots", "--set", "sampler.nlive=40",
            "--output", str(tmp_path)]
    # stop early (the step that crosses maxcall still ends: a step is a large part of this tiny
    # run): a partial result and a checkpoint
    assert main(args + ["--set", f"sampler.maxcall={full.diagnostics['ncall'] // 4}"]) == 0
    partial = read_result(tmp_path / f"{label}.h5")
    assert partial.diagnostics["ncall"] < 0.7 * full.diagnostics["ncall"]
    assert (tmp_path / f"{label}_checkpoint.npz").is_file()
    assert main(args + ["--resume"]) == 0
    resumed = read_result(tmp_path / f"{label}.h5")
    # the sampler continued from the checkpoint ...
    assert resumed.diagnostics["ncall_resumed"] == partial.diagnostics["ncall"] > 0
    assert resumed.diagnostics["niter"] > partial.diagnostics["niter"] > 0
    # ... and ended where the uninterrupted run with the same seed ended
    assert resumed.diagnostics["ncall"] == full.diagnostics["ncall"]
    assert resumed.log_evidence["flat"] == full.log_evidence["flat"]
    np.testing.assert_array_equal(resumed.posterior["final_mass"], full.posterior["final_mass"])
    # a truncated checkpoint is one clear line, not a traceback
    checkpoint = tmp_path / f"{label}_checkpoint.npz"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    capsys.readouterr()
    assert main(args + ["--resume"]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_parameter_space_follows_the_inclination_and_polarization_settings():
    import scipy.stats

    from gwtools.ringdown.config import load_config, override
    from gwtools.ringdown.pipeline import parameter_space

    base = load_config(Path(__file__).resolve().parents[1] / "pipelines" / "gw150914.toml")
    space, fixed = parameter_space(base)
    assert space.names == ("final_mass", "final_spin")
    assert fixed == {"polarization": 0.82, "inclination": pytest.approx(np.pi)}
    sampled = override(base, {"prior": {"cos_inclination": [-1.0, -0.5]}})
    space, fixed = parameter_space(sampled)
    assert space.names == ("final_mass", "final_spin", "inclination") and "inclination" not in fixed
    # flat in cos(inclination) on [-1, -0.5]: Kolmogorov-Smirnov against the uniform law
    u = np.random.default_rng(5).uniform(size=(4000, 3))
    cos_i = np.cos(space(u)[:, 2])
    assert scipy.stats.kstest(cos_i, scipy.stats.uniform(-1.0, 0.5).cdf).pvalue > 0.01
    masses = space(u)[:, 0]
    assert masses.min() >= 35.0 and masses.max() <= 140.0
    free = override(base, {"model": {"polarization": "free"}})
    space, fixed = parameter_space(free)
    assert space.names == ("final_mass", "final_spin") and fixed == {"polarization": 0.82}


def test_plots_refuse_bad_input(tmp_path):
    from gwtools.ringdown import plots

    good = np.linspace(60.0, 80.0, 50)
    with pytest.raises(ValueError, match="NaN or inf"):
        plots.plot_remnant_corner(np.append(good, np.nan), np.append(good, 0.5) / 100, tmp_path / "a.png")
    with pytest.raises(ValueError, match="no amplitudes"):
        plots.plot_amplitudes({}, tmp_path / "b.png")
    with pytest.raises(ValueError, match=r"H1: waveform arrays \['whitened_median'\] are missing"):
        plots.plot_whitened_data({"H1": {"time": good, "whitened_data": good}}, tmp_path / "c.png")
    assert not list(tmp_path.iterdir())


def test_whitened_plot_spans_a_few_damping_times_of_the_longest_lived_mode():
    from gwtools.ringdown import plots
    from gwtools.ringdown.likelihood import START_SHIFT

    rng = np.random.default_rng(3)
    posterior = {"damping_time_220": rng.normal(4e-3, 2e-4, 501),
                 "damping_time_221": rng.normal(1.3e-3, 1e-4, 501)}
    longest = np.median(posterior["damping_time_220"])
    assert plots.whitened_plot_span(posterior, ["220", "221"], 0.2) == pytest.approx(10 * longest)
    assert plots.whitened_plot_span(posterior, ["221"], 0.2) == pytest.approx(
        10 * np.median(posterior["damping_time_221"]))
    assert plots.whitened_plot_span(posterior, ["220"], 0.03) == 0.03  # bounded by the segment
    # a sampled start shift moves the ringdown later (an earlier start shows it all anyway)
    later = {**posterior, START_SHIFT: np.full(501, 2e-3)}
    assert plots.whitened_plot_span(later, ["220"], 0.2) == pytest.approx(2e-3 + 10 * longest)
    earlier = {**posterior, START_SHIFT: np.full(501, -2e-3)}
    assert plots.whitened_plot_span(earlier, ["220"], 0.2) == pytest.approx(10 * longest)
    with pytest.raises(ValueError, match=r"missing \['damping_time_330'\]"):
        plots.whitened_plot_span(posterior, ["220", "330"], 0.2)
    assert START_SHIFT in plots.CORNER_LABELS


def test_figures_drawn_in_a_second_process_are_the_figures_drawn_here(tiny_run, tmp_path):
    from PIL import Image

    from gwtools.ringdown import plots

    _, out = tiny_run
    result = read_result(out / "GW150914_220+221.h5")
    (tmp_path / "here").mkdir()
    (tmp_path / "worker").mkdir()
    here, _ = plots.plot_result(result, tmp_path / "here")
    with output_worker() as worker:
        shared, summary = plots.plot_result(result, tmp_path / "worker", executor=worker)
    assert [p.name for p in shared] == [p.name for p in here]  # same figures, same order
    for a, b in zip(here, shared):
        assert Image.open(a).size == Image.open(b).size
    assert all(p.name in summary.read_text() for p in here)


def test_a_figure_that_fails_beside_the_output_worker_keeps_the_published_set(tiny_run, tmp_path, monkeypatch):
    """A figure drawn in the main process fails while the worker still writes into the stage: the
    error reaches the caller, the published set is untouched and no staging folder is left."""
    from gwtools.ringdown import plots

    config, out = tiny_run
    copy, before = published_copy(out, tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(plots, "plot_remnant_corner", broken)  # the first figure: drawn here
    with pytest.raises(RuntimeError, match="figure failed"):
        main(["ringdown", str(config), "--resume", "--quiet", "--output", str(copy),
              "--set", "sampler.nlive=40"])
    assert outputs.verify_result_set(copy, "GW150914_220+221") == before
    assert not [p.name for p in copy.iterdir() if p.name.startswith(".")]
