"""Start-time scan: table logic on known numbers, point names and seeds, the [scan] section, and
small scans: batched on a Dask cluster, against point-by-point runs of the same points."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import SMALL_SCAN_TOML

from gwtools import cli
from gwtools.io import outputs
from gwtools.ringdown import scan as scan_module
from gwtools.ringdown.config import load_scan_config, parse_config, start_offset_seconds
from gwtools.ringdown.pipeline import run_pipeline
from gwtools.ringdown.results import read_result
from gwtools.ringdown.scan import (
    SCAN_COLUMNS,
    ScanPoint,
    check_scan_points,
    point_seed,
    read_scan_table,
    run_scan,
    scan_batches,
    scan_points,
    scan_task,
    tabulate_scan,
    write_scan_table,
)

PEAK = 1126259462.423


def write_scan(tmp_path, project_data, starts="start_offsets_ms = [0.0, 3.0, 6.0]", sampler="", name="scan.toml"):
    path = tmp_path / name
    path.write_text(SMALL_SCAN_TOML.format(data=project_data / "GW150914", out=tmp_path / "scan",
                                           starts=starts, sampler=sampler))
    return path


def point(offset: float, modes: tuple[str, ...], seed: int = 7) -> ScanPoint:
    return ScanPoint(name=f"p{offset}{modes}", modes=modes, start_offset_ms=offset, seed=seed, config={})


def outcome(ln_z: float, err: float, ess: float = 5000.0, efficiency: float = 0.9) -> dict:
    return {"ln_z_physical": ln_z, "ln_z_physical_err": err, "importance_ess": ess,
            "importance_efficiency": efficiency}


def test_bayes_factors_failures_and_warnings_in_the_table(tmp_path):
    one, two = ("220",), ("220", "221")
    points = [point(0.0, one), point(0.0, two), point(2.0, one), point(2.0, two), point(4.0, one),
              point(4.0, two, seed=99)]
    outcomes = [
        outcome(100.0, 0.3),
        outcome(102.5, 0.4, ess=640.0),
        outcome(90.0, 0.1, efficiency=0.004),
        RuntimeError("worker died"),
        ValueError("segment outside the data"),
        outcome(80.0, 0.1),
    ]
    rows = tabulate_scan(points, outcomes)
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "failed", "failed", "ok"]
    assert rows[1]["ln_b"] == pytest.approx(2.5)
    assert rows[1]["ln_b_err"] == pytest.approx(0.5)  # hypot(0.3, 0.4)
    assert rows[0]["ln_b"] == ""  # the reference itself
    assert rows[3]["error"] == "RuntimeError: worker died"
    assert rows[3]["modes"] == "220+221" and rows[3]["start_offset_ms"] == 2.0
    assert rows[5]["ln_b"] == ""  # its reference failed: no Bayes factor, not a wrong one
    assert rows[5]["seed"] == 99 and rows[4]["seed"] == 7  # failed rows keep their seed too
    # below the reconstruction's ESS target (1000), or with 0.4% of the draws effective
    assert rows[0]["warning"] == "" and rows[5]["warning"] == ""
    assert rows[1]["warning"].startswith("importance ESS 640 < 1000: physical-prior evidence")
    assert rows[2]["warning"].startswith("importance efficiency 0.40% < 1%")
    assert rows[3]["warning"] == ""
    # a failure that scan_task returned instead of raising (bad input: not retried)
    returned = tabulate_scan(points[:2], [outcomes[0], {"error": "ValueError: [data] files.H1: ..."}])
    assert returned[1]["status"] == "failed" and returned[1]["error"] == "ValueError: [data] files.H1: ..."
    path = write_scan_table(rows, tmp_path / "scan.csv")
    back = read_scan_table(path)
    assert len(back) == 6 and tuple(back[0]) == SCAN_COLUMNS
    assert back[1]["ln_b"] == pytest.approx(2.5) and back[3]["status"] == "failed"
    assert back[1]["warning"] == rows[1]["warning"] and back[1]["importance_ess"] == 640.0
    with pytest.raises(ValueError, match="2 scan points but 1 outcomes"):
        tabulate_scan(points[:2], outcomes[:1])


def test_point_names_are_unique_and_seeds_depend_on_the_point_alone(tmp_path, project_data):
    # offsets 0.1 us apart: a fixed number of decimals would give them one directory
    close = load_scan_config(write_scan(tmp_path, project_data,
                                        "start_offsets_ms = [1.0, 1.0001, 1.0000001]"))
    names = [p.name for p in scan_points(close)]
    assert names == ["start_+1.0ms_220", "start_+1.0ms_220+221", "start_+1.0001ms_220",
                     "start_+1.0001ms_220+221", "start_+1.0000001ms_220", "start_+1.0000001ms_220+221"]
    wide = scan_points(load_scan_config(write_scan(tmp_path, project_data, "start_offsets_ms = [0.0, 3.0, 6.0]")))
    other = scan_points(load_scan_config(write_scan(tmp_path, project_data, "start_offsets_ms = [3.0, 9.0]")))
    # the 3 ms points of two different grids: same directory, seed and configuration
    assert wide[2:4] == other[:2]
    seeds = [p.seed for p in wide + other[2:]]
    assert len(set(seeds)) == len(seeds)
    assert wide[2].seed == point_seed(1234, "start_offset_ms", 3.0, ("220",))  # 1234: the default seed
    assert parse_config(wide[2].config).sampler.seed == wide[2].seed
    reseeded = scan_points(load_scan_config(write_scan(tmp_path, project_data, "start_offsets_ms = [3.0]",
                                                       sampler="seed = 5")))
    assert reseeded[0].seed != wide[2].seed
    # a mode set given twice (here built by hand: the [scan] parser refuses it) would share directories
    scan = load_scan_config(write_scan(tmp_path, project_data))
    twice = dataclasses.replace(scan, mode_sets=(("220",), ("220",)))
    with pytest.raises(ValueError, match=r"share output directories \['start_\+0.0ms_220'"):
        scan_points(twice)


def test_absolute_start_times(tmp_path, project_data):
    config = write_scan(tmp_path, project_data, f"start_times = [{PEAK + 0.003!r}, {PEAK + 0.003001!r}]")
    scan = load_scan_config(config)
    assert scan.start_key == "start_time"
    points = scan_points(scan)
    assert [p.name for p in points[::2]] == [f"start_gps{PEAK + 0.003!r}_220", f"start_gps{PEAK + 0.003001!r}_220"]
    assert len({p.name for p in points}) == 4
    # GPS in H1 (the reference detector): 3 ms after its peak, to the float64 spacing of GPS
    # times (2.4e-7 s), and 1 us apart (4 of those spacings) in two directories
    assert points[0].start_offset_ms == pytest.approx(3.0, abs=2.4e-4)
    assert points[2].start_offset_ms - points[0].start_offset_ms == pytest.approx(1e-3, abs=2.4e-4)
    run = parse_config(points[0].config)
    assert run.analysis.start_time == PEAK + 0.003 and run.analysis.start_offset_ms is None
    assert start_offset_seconds(run) == pytest.approx(3e-3, abs=2.4e-7)
    # a time outside the data is refused before anything runs, naming the key
    late = load_scan_config(write_scan(tmp_path, project_data, f"start_times = [{PEAK + 30.0}]"))
    with pytest.raises(ValueError, match=r"\+30000.000 ms \(220\).*\[analysis\] start_time: the H1 segment"):
        check_scan_points(scan_points(late))


def test_batches_are_per_mode_set_split_evenly(tmp_path, project_data):
    offsets = ", ".join(f"{float(k)}" for k in range(13))
    scan = load_scan_config(write_scan(tmp_path, project_data, f"start_offsets_ms = [{offsets}]"))
    points = scan_points(scan)
    batches = scan_batches(scan, points)
    assert [len(b) for b in batches] == [13, 13]
    assert {points[i].modes for i in batches[1]} == {("220", "221")}
    split = dataclasses.replace(scan, batch_size=8)
    batches = scan_batches(split, points)
    assert [len(b) for b in batches] == [7, 6, 7, 6]
    assert sorted(i for b in batches for i in b) == list(range(26))
    assert [points[i].start_offset_ms for i in batches[3]] == [7.0, 8.0, 9.0, 10.0, 11.0, 12.0]
    dynesty = load_scan_config(write_scan(tmp_path, project_data, sampler='engine = "dynesty"'))
    assert scan_batches(dynesty, scan_points(dynesty)) == [(i,) for i in range(6)]


def test_set_reaches_the_scan_section(tmp_path, project_data, monkeypatch):
    config = write_scan(tmp_path, project_data)
    scan = load_scan_config(config, {"scan": {"start_times": [PEAK + 0.002], "batch_size": 4},
                                     "sampler": {"nlive": 40}})
    assert scan.start_key == "start_time" and scan.starts == (PEAK + 0.002,)  # the file's offsets are gone
    assert scan.batch_size == 4 and scan.run.sampler.nlive == 40
    with pytest.raises(ValueError, match=r"\[scan\] workers: unknown key"):
        load_scan_config(config, {"scan": {"workers": 2}})
    with pytest.raises(ValueError, match=r"\[scan\] batch_size: must be >= 1"):
        load_scan_config(config, {"scan": {"batch_size": 0}})
    with pytest.raises(ValueError, match=r"\[scan\] mode_sets: repeated mode set"):
        load_scan_config(config, {"scan": {"mode_sets": [["220"], ["221", "220"], ["220", "221"]]}})
    # through the command line
    seen = {}

    def fake_run_scan(scan, **_):
        seen["scan"] = scan
        return scan_module.ScanOutputs(rows=(), table_path=tmp_path / "t.csv", plot_path=tmp_path / "p.png")

    monkeypatch.setattr(scan_module, "run_scan", fake_run_scan)
    status = cli.main(["scan", str(config), "--set", "scan.start_offsets_ms=[1.5, 2.5]",
                       "--set", "scan.retries=0", "--nlive", "30"])
    assert status == 0
    assert seen["scan"].starts == (1.5, 2.5) and seen["scan"].retries == 0
    assert seen["scan"].run.sampler.nlive == 30
    assert cli.main(["scan", str(config), "--set", "scan.batch_size=-1"]) == 2  # one line, no traceback


@contextlib.contextmanager
def _held(directories):
    """Hold the output directories' locks, as runs still working in them would."""
    with contextlib.ExitStack() as stack:
        for directory in directories:
            stack.enter_context(outputs.lock_directory(directory, "busy-run"))
        yield


@pytest.fixture(scope="module")
def dask_scan(tmp_path_factory, project_data):
    """A blackjax scan of three start times on a running cluster, reached by its address; the
    directories of the last start time are held by another run.  Returns (points, rows, outputs)."""
    from distributed import LocalCluster

    tmp_path = tmp_path_factory.mktemp("dask_scan")
    scan = load_scan_config(write_scan(tmp_path, project_data))
    points = scan_points(scan)
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, \
            _held([p.config["output"]["directory"] for p in points[4:]]):
        outputs_ = run_scan(scan, scheduler=cluster.scheduler_address)
    return points, read_scan_table(outputs_.table_path), outputs_


@pytest.mark.slow
def test_scan_on_a_dask_cluster_given_by_its_address(dask_scan):
    points, rows, outputs_ = dask_scan
    assert len({p.config["output"]["directory"] for p in points}) == 6
    assert outputs_.plot_path.is_file()
    assert [(r["start_offset_ms"], r["modes"]) for r in rows] == [
        (0.0, "220"), (0.0, "220+221"), (3.0, "220"), (3.0, "220+221"),
        (6.0, "220"), (6.0, "220+221")]
    # the held points failed before sampling; the other points of their batches went on
    assert [r["status"] for r in rows] == ["ok"] * 4 + ["failed"] * 2
    assert "is in use by run busy-run" in rows[4]["error"]
    for ok, p in zip(rows[:4], points):
        assert math.isfinite(ok["ln_z_physical"]) and ok["ncall"] > 0
        assert ok["final_mass_lower"] <= ok["final_mass_median"] <= ok["final_mass_upper"]
        assert 0.0 <= ok["final_spin_lower"] <= ok["final_spin_upper"] <= 0.99
        assert outputs.verify_result_set(Path(ok["result_path"]).parent, Path(ok["result_path"]).stem)
        assert Path(ok["result_path"]).parent.name == p.name and ok["seed"] == p.seed
        assert ok["importance_ess"] > 0 and 0 < ok["importance_efficiency"] <= 1
        assert ok["importance_ess"] == pytest.approx(read_result(ok["result_path"]).diagnostics["importance_ess"])
        assert isinstance(ok["warning"], str)
    for ref, two in ((rows[0], rows[1]), (rows[2], rows[3])):
        assert two["ln_b"] == pytest.approx(two["ln_z_physical"] - ref["ln_z_physical"])
    # the start times are 3 ms apart at the geocentre as well
    assert rows[2]["start_geocenter_gps"] - rows[0]["start_geocenter_gps"] == pytest.approx(3e-3, abs=1e-7)


@pytest.mark.slow
def test_batched_points_are_the_point_by_point_runs(dask_scan, tmp_path):
    """A point of a batch against ``gwtools ringdown`` on the point's own configuration.

    The batch draws exactly the random numbers of the single run with the point's seed, so the
    two are the same nested-sampling run: the same likelihood calls and dead points, equal
    evidences.  Only the rounding of the vmapped program may differ (it did, in the last bit of
    some samples), so values are compared to 1e-9, far inside the ln Z errors.
    """
    points, rows, _ = dask_scan
    batched = read_result(rows[2]["result_path"])
    config = dataclasses.replace(parse_config(points[2].config), output=dataclasses.replace(
        parse_config(points[2].config).output, directory=tmp_path / "single"))
    single = run_pipeline(config, progress=False, plots=False).result
    for key in ("ncall", "niter", "posterior_samples_sampler"):
        assert batched.diagnostics[key] == single.diagnostics[key]
    for prior in ("flat", "physical"):
        np.testing.assert_allclose(batched.log_evidence[prior], single.log_evidence[prior], rtol=0, atol=1e-9)
    assert batched.diagnostics["importance_ess"] == pytest.approx(single.diagnostics["importance_ess"], rel=1e-9)
    for name in ("final_mass", "final_spin", "amplitude_220", "phase_220"):
        np.testing.assert_allclose(batched.posterior[name], single.posterior[name], rtol=1e-9, atol=1e-12)


def test_a_dynesty_point_is_its_single_run(tmp_path, project_data):
    """dynesty has no batch mode: a scan task samples each point as the pipeline does, so the
    results are identical, bit for bit."""
    scan = load_scan_config(write_scan(tmp_path, project_data, "start_offsets_ms = [2.0]",
                                       sampler='engine = "dynesty"\nqueue_size = 1'))
    points = scan_points(scan)
    (row,) = scan_task([points[0].config])
    config = parse_config(points[0].config)
    single = run_pipeline(dataclasses.replace(config, output=dataclasses.replace(
        config.output, directory=tmp_path / "single")), progress=False, plots=False).result
    batched = read_result(row["result_path"])
    assert row["seed"] == points[0].seed == single.config["sampler"]["seed"]
    assert batched.log_evidence == single.log_evidence
    for name in ("final_mass", "final_spin", "amplitude_220"):
        np.testing.assert_array_equal(batched.posterior[name], single.posterior[name])


def test_default_local_cluster_reports_failures(tmp_path, project_data):
    scan = load_scan_config(write_scan(tmp_path, project_data, "start_offsets_ms = [2.0]"))
    with _held([p.config["output"]["directory"] for p in scan_points(scan)]):
        result = run_scan(scan, n_workers=1)
    rows = read_scan_table(result.table_path)
    assert [(r["modes"], r["status"]) for r in rows] == [("220", "failed"), ("220+221", "failed")]
    assert all(f"OutputLockedError: output directory {tmp_path}/scan/start_+2.0ms_" in r["error"]
               and f"is in use by run busy-run (pid {os.getpid()}" in r["error"] for r in rows)
    assert result.plot_path.is_file()
    manifest = outputs.verify_result_set(tmp_path / "scan", "scan")
    assert sorted(manifest["files"]) == ["scan.csv", "scan.png"]


def test_points_that_cannot_run_refuse_the_scan_before_it_starts(tmp_path, project_data):
    config = write_scan(tmp_path, project_data, "start_offsets_ms = [0.0, -20000.0, 30000.0]")
    with pytest.raises(ValueError) as refused:
        run_scan(load_scan_config(config), n_workers=1)
    lines = str(refused.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("scan point(s) -20000.000 ms (220), -20000.000 ms (220+221): "
                               "[analysis] start_offset_ms: the H1 segment GPS [1126259442.4230")
    assert lines[1].startswith("scan point(s) +30000.000 ms (220), +30000.000 ms (220+221): ")
    assert not (tmp_path / "scan").exists()  # nothing ran, nothing was written


def test_only_unexpected_failures_are_raised_for_dask_to_retry(monkeypatch):
    configs = [{"output": {"label": "p"}}, {"output": {"label": "q"}}]

    def fails_with(error):
        def parse(config):
            raise error
        return parse

    monkeypatch.setattr(scan_module, "parse_config", fails_with(ValueError("[analysis] bad")))
    assert scan_task(configs) == [{"error": "ValueError: [analysis] bad"}] * 2
    monkeypatch.setattr(scan_module, "parse_config", fails_with(FileNotFoundError("gone")))
    assert scan_task(configs) == [{"error": "FileNotFoundError: gone"}] * 2
    monkeypatch.setattr(scan_module, "parse_config", fails_with(MemoryError("worker ran out")))
    with pytest.raises(MemoryError):
        scan_task(configs)
