"""Start-time scan: table logic on known numbers, and a small scan on a local Dask cluster."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import pytest

from gwtools.io import outputs
from gwtools.ringdown import scan as scan_module
from gwtools.ringdown.config import load_scan_config
from gwtools.ringdown.scan import (
    SCAN_COLUMNS,
    read_scan_table,
    run_scan,
    scan_points,
    scan_task,
    tabulate_scan,
    write_scan_table,
)

SCAN = """
[data]
files = {{ H1 = "{data}/H-H1_GWOSC_4KHZ_R1-1126259447-32.hdf5", L1 = "{data}/L-L1_GWOSC_4KHZ_R1-1126259447-32.hdf5" }}
[event]
name = "GW150914"
time = 1126259462.423
reference_detector = "H1"
ra = 1.95
dec = -1.27
psi = 0.82
[analysis]
duration = 0.04
sample_rate = 1024.0
[prior]
final_mass = [35.0, 140.0]
amplitude_max = 2e-20
[sampler]
engine = "dynesty"           # each Dask worker compiles its own likelihood: one batch size is cheapest
nlive = 25
dlogz = 2.0
queue_size = 1               # one batch size: one compilation per run keeps the test short
[output]
directory = "{out}"
[scan]
start_offsets_ms = {offsets}
retries = 1
"""


def point(offset: float, modes: list[str]) -> dict:
    return {"analysis": {"start_offset_ms": offset}, "model": {"modes": modes}}


def outcome(offset: float, modes: str, ln_z: float, err: float) -> dict:
    return {"start_offset_ms": offset, "modes": modes, "ln_z_physical": ln_z, "ln_z_physical_err": err}


def test_bayes_factors_and_failures_in_the_table(tmp_path):
    points = [point(0.0, ["220"]), point(0.0, ["220", "221"]), point(2.0, ["220"]),
              point(2.0, ["220", "221"]), point(4.0, ["220"]), point(4.0, ["220", "221"])]
    outcomes = [
        outcome(0.0, "220", 100.0, 0.3),
        outcome(0.0, "220+221", 102.5, 0.4),
        outcome(2.0, "220", 90.0, 0.1),
        RuntimeError("worker died"),
        ValueError("segment outside the data"),
        outcome(4.0, "220+221", 80.0, 0.1),
    ]
    rows = tabulate_scan(points, outcomes)
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "failed", "failed", "ok"]
    assert rows[1]["ln_b"] == pytest.approx(2.5)
    assert rows[1]["ln_b_err"] == pytest.approx(0.5)  # hypot(0.3, 0.4)
    assert rows[0]["ln_b"] == ""  # the reference itself
    assert rows[3]["error"] == "RuntimeError: worker died"
    assert rows[3]["modes"] == "220+221" and rows[3]["start_offset_ms"] == 2.0
    assert rows[5]["ln_b"] == ""  # its reference failed: no Bayes factor, not a wrong one
    # a failure that scan_task returned instead of raising (bad input: not retried)
    returned = tabulate_scan(points[:2], [outcomes[0], {"error": "ValueError: [data] files.H1: ..."}])
    assert returned[1]["status"] == "failed" and returned[1]["error"] == "ValueError: [data] files.H1: ..."
    path = write_scan_table(rows, tmp_path / "scan.csv")
    back = read_scan_table(path)
    assert len(back) == 6 and tuple(back[0]) == SCAN_COLUMNS
    assert back[1]["ln_b"] == pytest.approx(2.5) and back[3]["status"] == "failed"
    with pytest.raises(ValueError, match="2 scan points but 1 outcomes"):
        tabulate_scan(points[:2], outcomes[:1])


@contextlib.contextmanager
def _held(directories):
    """Hold the output directories' locks, as runs still working in them would."""
    with contextlib.ExitStack() as stack:
        for directory in directories:
            stack.enter_context(outputs.lock_directory(directory, "busy-run"))
        yield


@pytest.mark.slow
def test_scan_on_a_dask_cluster_given_by_its_address(tmp_path, project_data):
    from distributed import LocalCluster

    config = tmp_path / "scan.toml"
    # two start times that run, and one whose directories another run holds: it must fail
    # and be reported
    config.write_text(SCAN.format(data=project_data / "GW150914", out=tmp_path / "scan",
                                  offsets="[0.0, 3.0, 6.0]"))
    scan = load_scan_config(config)
    points = scan_points(scan)
    assert len(points) == 6 and len({p["output"]["directory"] for p in points}) == 6
    # an already running cluster, reached through its scheduler address as a remote one would be
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, \
            _held([p["output"]["directory"] for p in points[4:]]):
        outputs_ = run_scan(scan, scheduler=cluster.scheduler_address)
    rows = read_scan_table(outputs_.table_path)
    assert outputs_.plot_path.is_file()
    assert [(r["start_offset_ms"], r["modes"]) for r in rows] == [
        (0.0, "220"), (0.0, "220+221"), (3.0, "220"), (3.0, "220+221"),
        (6.0, "220"), (6.0, "220+221")]
    assert [r["status"] for r in rows] == ["ok"] * 4 + ["failed"] * 2
    assert "is in use by run busy-run" in rows[4]["error"]
    for ok in rows[:4]:
        assert math.isfinite(ok["ln_z_physical"]) and ok["ncall"] > 0
        assert ok["final_mass_lower"] <= ok["final_mass_median"] <= ok["final_mass_upper"]
        assert 0.0 <= ok["final_spin_lower"] <= ok["final_spin_upper"] <= 0.99
        assert outputs.verify_result_set(Path(ok["result_path"]).parent, Path(ok["result_path"]).stem)
    for ref, two in ((rows[0], rows[1]), (rows[2], rows[3])):
        assert two["ln_b"] == pytest.approx(two["ln_z_physical"] - ref["ln_z_physical"])
    # the start times are 3 ms apart at the geocentre as well
    assert rows[2]["start_geocenter_gps"] - rows[0]["start_geocenter_gps"] == pytest.approx(3e-3, abs=1e-7)


def test_default_local_cluster_reports_failures(tmp_path, project_data):
    config = tmp_path / "scan.toml"
    config.write_text(SCAN.format(data=project_data / "GW150914", out=tmp_path / "scan",
                                  offsets="[2.0]"))
    scan = load_scan_config(config)
    with _held([p["output"]["directory"] for p in scan_points(scan)]):
        result = run_scan(scan, n_workers=1)
    rows = read_scan_table(result.table_path)
    assert [(r["modes"], r["status"]) for r in rows] == [("220", "failed"), ("220+221", "failed")]
    assert all(f"OutputLockedError: output directory {tmp_path}/scan/start_+2.000ms_" in r["error"]
               and f"is in use by run busy-run (pid {os.getpid()}" in r["error"] for r in rows)
    assert result.plot_path.is_file()
    manifest = outputs.verify_result_set(tmp_path / "scan", "scan")
    assert sorted(manifest["files"]) == ["scan.csv", "scan.png"]


def test_points_that_cannot_run_refuse_the_scan_before_it_starts(tmp_path, project_data):
    config = tmp_path / "scan.toml"
    config.write_text(SCAN.format(data=project_data / "GW150914", out=tmp_path / "scan",
                                  offsets="[0.0, -20000.0, 30000.0]"))
    with pytest.raises(ValueError) as refused:
        run_scan(load_scan_config(config), n_workers=1)
    lines = str(refused.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("scan point(s) -20000.000 ms (220), -20000.000 ms (220+221): "
                               "[analysis] start_offset_ms: the H1 segment GPS [1126259442.4230")
    assert lines[1].startswith("scan point(s) +30000.000 ms (220), +30000.000 ms (220+221): ")
    assert not (tmp_path / "scan").exists()  # nothing ran, nothing was written


def test_only_unexpected_failures_are_raised_for_dask_to_retry(monkeypatch):
    point = {"output": {"label": "p"}}

    def fails_with(error):
        def run(config):
            raise error
        return run

    monkeypatch.setattr(scan_module, "run_scan_point", fails_with(ValueError("[analysis] bad")))
    assert scan_task(point) == {"error": "ValueError: [analysis] bad"}
    monkeypatch.setattr(scan_module, "run_scan_point", fails_with(FileNotFoundError("gone")))
    assert scan_task(point) == {"error": "FileNotFoundError: gone"}
    monkeypatch.setattr(scan_module, "run_scan_point", fails_with(MemoryError("worker ran out")))
    with pytest.raises(MemoryError):
        scan_task(point)
