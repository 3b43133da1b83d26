"""Output directories: locks (live, stale, across processes) and result sets killed at every step."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gwtools.io import outputs

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# A process that takes the lock of argv[1], says so, and waits to be killed.
HOLD_LOCK = """
import sys, time
from gwtools.io.outputs import lock_directory
with lock_directory(sys.argv[1], "holder-run"):
    print("locked", flush=True)
    time.sleep(120)
"""

# A run that publishes set "res" = {a.h5, b.json, d.png} over the published {a.h5, b.json,
# c.png}, and kills itself (SIGKILL, no clean-up runs) before file-system step argv[2] of
# sealing and publishing, or while writing (argv[2] == -1).
KILLED_PUBLISH = """
import os, shutil, signal, sys
from gwtools.io import outputs

directory, kill_at = sys.argv[1], int(sys.argv[2])
steps = [0]

def counted(operation):
    def step(*args, **kwargs):
        if steps[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        steps[0] += 1
        return operation(*args, **kwargs)
    return step

with outputs.lock_directory(directory, "run-B"):
    with outputs.staged_result_set(directory, "res", "run-B") as stage:
        (stage / "a.h5").write_text("B: a")
        if kill_at == -1:
            os.kill(os.getpid(), signal.SIGKILL)
        (stage / "b.json").write_text("B: b")
        (stage / "d.png").write_text("B: d")
        os.replace, os.unlink, shutil.rmtree = (
            counted(os.replace), counted(os.unlink), counted(shutil.rmtree))
print("finished", flush=True)
"""

SET_A = {"a.h5": "A: a", "b.json": "A: b", "c.png": "A: c"}
SET_B = {"a.h5": "B: a", "b.json": "B: b", "d.png": "B: d"}


def _python(script: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _publish(directory: Path, files: dict[str, str], run_id: str) -> None:
    with outputs.lock_directory(directory, run_id), \
            outputs.staged_result_set(directory, "res", run_id) as stage:
        for name, text in files.items():
            (stage / name).write_text(text)


def _visible_set(directory: Path) -> dict[str, str] | None:
    """What a verifying reader gets: the published files' contents, or None if refused."""
    try:
        manifest = outputs.verify_result_set(directory, "res")
    except ValueError as err:
        assert "being published" in str(err), err
        return None
    return {name: (directory / name).read_text() for name in manifest["files"]}


def test_a_second_run_is_refused_naming_the_first(tmp_path):
    with outputs.lock_directory(tmp_path / "out", "first-run"), \
            pytest.raises(outputs.OutputLockedError) as refused, \
            outputs.lock_directory(tmp_path / "out", "second-run"):
        pass
    message = str(refused.value)
    assert "run first-run" in message and f"pid {os.getpid()} on {socket.gethostname()}" in message
    assert "started 20" in message and "UTC" in message
    # released on exit: the lock file is gone and the directory can be taken again
    assert not (tmp_path / "out" / outputs.LOCK_NAME).exists()
    with outputs.lock_directory(tmp_path / "out", "third-run"):
        pass


def test_lock_of_a_killed_process_is_detected_and_taken_over(tmp_path, caplog):
    out = tmp_path / "out"
    holder = _python(HOLD_LOCK, str(out))
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        # alive in another process: refused, naming it
        with pytest.raises(outputs.OutputLockedError, match=f"run holder-run \\(pid {holder.pid} "), \
                outputs.lock_directory(out, "mine"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    (out / ".GW_x.h5.abc123.tmp").write_bytes(b"half a file")  # as atomic_path leaves it
    (out / "GW_x_checkpoint.pkl.tmp").write_bytes(b"half a checkpoint")
    (out / "keep.txt").write_text("not ours to delete")
    with caplog.at_level(logging.INFO, logger="gwtools.io.outputs"), \
            outputs.lock_directory(out, "mine") as owner:
        assert owner.run_id == "mine"
    taken = [r.getMessage() for r in caplog.records if "taking over the lock" in r.getMessage()]
    assert len(taken) == 1 and f"pid {holder.pid}" in taken[0] and "holder-run" in taken[0]
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_failed_body_leaves_the_published_set_untouched(tmp_path):
    _publish(tmp_path, SET_A, "run-A")
    with pytest.raises(RuntimeError, match="sampler exploded"), \
            outputs.lock_directory(tmp_path, "run-B"), \
            outputs.staged_result_set(tmp_path, "res", "run-B") as stage:
        (stage / "a.h5").write_text("B: a")
        raise RuntimeError("sampler exploded")
    assert _visible_set(tmp_path) == SET_A
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.json", "c.png", "res.manifest.json"]


def test_kill_at_every_step_never_shows_a_mixed_set(tmp_path):
    """A reader sees set A, set B or 'being published', never a mix; the next run repairs."""
    outcomes = []
    kill_at = -1
    while True:
        directory = tmp_path / f"kill_{kill_at + 1}"
        _publish(directory, SET_A, "run-A")
        writer = _python(KILLED_PUBLISH, str(directory), str(kill_at))
        stdout, stderr = writer.communicate(timeout=60)
        if writer.returncode == 0:
            assert "finished" in stdout
            assert _visible_set(directory) == SET_B
            break
        assert writer.returncode == -signal.SIGKILL, stderr
        seen = _visible_set(directory)
        assert seen in (SET_A, SET_B, None)
        for name in ("a.h5", "b.json"):  # a single file is refused rather than read unmatched
            try:
                run = outputs.verify_member(directory / name, "res")
            except ValueError as err:
                assert "being published" in str(err)
                continue
            assert (directory / name).read_text().startswith({"run-A": "A", "run-B": "B"}[run])
        with outputs.lock_directory(directory, "next-run"):
            pass  # taking the lock recovers the directory
        repaired = _visible_set(directory)
        outcomes.append((seen is None, repaired == SET_B))
        # once sealed the set is published (rolled forward), before that the old set stays
        assert repaired in (SET_A, SET_B)
        expected = {"res.manifest.json", *(repaired or {})}
        assert {p.name for p in directory.iterdir()} == expected
        kill_at += 1
    # the loop went through writing, sealing and every step of publishing
    assert len(outcomes) >= 6
    assert outcomes[0] == (False, False)  # killed while writing: the old set survives
    assert (True, True) in outcomes  # killed mid-publication: readers refused, then rolled forward
    assert outcomes[-1] == (False, True)


def test_a_file_from_another_run_is_refused(tmp_path):
    _publish(tmp_path, SET_A, "run-A")
    (tmp_path / "b.json").write_text("B: b")  # what a non-atomic set of writes used to leave
    with pytest.raises(ValueError, match="not the file that run run-A published"):
        outputs.verify_member(tmp_path / "b.json", "res")
    with pytest.raises(ValueError, match="mixes outputs of different runs"):
        outputs.verify_result_set(tmp_path, "res")
    (tmp_path / "stray.h5").write_text("?")
    with pytest.raises(ValueError, match="not part of result set res of run run-A"):
        outputs.verify_member(tmp_path / "stray.h5", "res")
    # a file copied on its own has no manifest beside it: read, unverified
    alone = tmp_path / "copy"
    alone.mkdir()
    (alone / "a.h5").write_text("A: a")
    assert outputs.verify_member(alone / "a.h5", "res") is None


def test_output_directory_that_cannot_be_used(tmp_path):
    blocker = tmp_path / "results.txt"
    blocker.write_text("a file, not a folder")
    with pytest.raises(ValueError, match=r"lies under .*results.txt, which is a file"):
        outputs.check_output_directory(blocker / "run" / "deeper")
    with pytest.raises(ValueError, match="results.txt is a file"), outputs.lock_directory(blocker, "x"):
        pass
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "readonly"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="permission denied"):
            outputs.check_output_directory(locked / "run")
    assert outputs.check_output_directory(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()
