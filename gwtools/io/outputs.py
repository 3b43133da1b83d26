"""Output directories that survive kills and refuse concurrent runs.

Every command that writes a result set (``gwtools ringdown``, ``scan``, ``compress-catalog``)
goes through three mechanisms:

* :func:`lock_directory` -- one run per output directory.  The lock is an exclusive
  ``flock`` on ``<directory>/.gwtools.lock``, which also records its owner (run id, pid, host,
  start time, command).  A second run refuses with a message naming the owner.  The kernel
  releases the lock when its process dies however it dies (``kill -9`` included), so a lock
  file whose lock is free is stale: the next run takes it over, logs whose it was, and cleans
  up what the dead run left (see :func:`recover`).  ``flock`` also works across hosts on NFS
  (Linux emulates it there with POSIX record locks).
* :func:`staged_result_set` -- outputs are written into a hidden staging folder beside their
  final place, sealed with a manifest (run id, size and sha256 of each file), then published.
* :func:`verify_member` and :func:`verify_result_set` -- readers check a file against the
  manifest of its set.

What a reader sees at every instant, if the writer is killed between any two file-system
operations:

1. while the outputs are written and sealed: the previous set and its manifest, untouched;
2. publication first moves the previous manifest into the staging folder, then replaces the
   files, then renames the new manifest into place: in between the set has no manifest and a
   staging folder sits beside it, and readers refuse it as "being published";
3. afterwards: the new set, complete, with its manifest.

A publication killed in step 2 is finished by the next run that takes the directory's lock
(the staging folder holds the whole sealed set); a staging folder without a manifest (killed
while writing) and temporary ``*.tmp`` files (from :func:`gwtools.io.atomic.atomic_path` or
the sampler's checkpoint writer) are deleted.  Durability against power loss (fsync) is not
attempted: the guarantees are about processes that die.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import secrets
import shutil
import socket
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from gwtools.io.atomic import atomic_path
from gwtools.io.checksums import file_sha256

__all__ = [
    "LOCK_NAME",
    "MANIFEST_SUFFIX",
    "LockOwner",
    "OutputLockedError",
    "new_run_id",
    "check_output_directory",
    "lock_directory",
    "staged_result_set",
    "recover",
    "read_manifest",
    "verify_result_set",
    "verify_member",
]

logger = logging.getLogger(__name__)

#: Lock file of an output directory.
LOCK_NAME = ".gwtools.lock"

#: A result set ``NAME`` is published as ``NAME.manifest.json`` beside its files.
MANIFEST_SUFFIX = ".manifest.json"

_STAGING_PREFIX = ".staging-"
# Inside a staging folder: the sealed manifest, and the previous one once publication began.
_SEALED = ".manifest.json"
_PREVIOUS = ".previous.json"
_MANIFEST_FORMAT = "gwtools result set"
_MANIFEST_VERSION = 1


class OutputLockedError(ValueError):
    """The output directory is locked by another run that is still alive."""


@dataclass(frozen=True)
class LockOwner:
    """Who holds an output directory.

    Attributes
    ----------
    run_id : str
        Run identifier (:func:`new_run_id`).
    pid : int
        Process id.
    host : str
        Host name.
    started_utc : str
        ISO 8601 time (UTC) at which the lock was taken.
    command : str
        The command line of the process.
    """

    run_id: str
    pid: int
    host: str
    started_utc: str
    command: str

    def describe(self) -> str:
        """One line naming the run: id, pid, host, start time and command."""
        return (
            f"run {self.run_id} (pid {self.pid} on {self.host}, started {self.started_utc} UTC: "
            f"{self.command})"
        )


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def new_run_id() -> str:
    """A unique, time-sortable run identifier, e.g. ``20250101T120000Z-3f9a2c``."""
    return f"{_utc_now():%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def check_output_directory(directory: str | os.PathLike) -> Path:
    """Check that ``directory`` is, or can be created as, a folder this process can write to.

    Nothing is created.  Returns the directory as a Path.

    Raises
    ------
    ValueError
        It is a file, lies under a file, or the nearest existing folder is not writable.
    """
    directory = Path(directory)
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == directory else f"lies under {existing}, which is a file"
        raise ValueError(f"output directory {directory} {where}: choose a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        action = "write to" if existing == directory else f"create it in {existing}"
        raise ValueError(
            f"output directory {directory}: permission denied, cannot {action}; choose a "
            "folder you can write to"
        )
    return directory


def _read_owner(fd: int) -> LockOwner | None:
    """The owner recorded in an open lock file; None if empty or unreadable (being written)."""
    try:
        text = os.pread(fd, 1 << 16, 0).decode()
        return LockOwner(**json.loads(text)) if text else None
    except (ValueError, TypeError, UnicodeDecodeError):
        return None


def _acquire(path: Path) -> int:
    """Open and exclusively lock ``path``; raise OutputLockedError if a live run holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            owner = _read_owner(fd)
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise
            who = owner.describe() if owner else "another gwtools run"
            raise OutputLockedError(
                f"output directory {path.parent} is in use by {who}: wait for it to finish, "
                "or choose another output directory"
            ) from None
        # The previous holder removes the file before unlocking it: if it did so between our
        # open and our lock, we hold a lock on a removed file, so start again on the new one.
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def lock_directory(directory: str | os.PathLike, run_id: str) -> Iterator[LockOwner]:
    """Hold the lock of an output directory (created if missing) for the body's duration.

    On entry a stale lock (its process is gone) is taken over with a warning naming the dead
    run, and :func:`recover` finishes or removes what interrupted runs left.  On exit the lock
    file is removed.

    Parameters
    ----------
    directory : path-like
        Output directory.
    run_id : str
        Identifier of this run, recorded in the lock file.

    Yields
    ------
    LockOwner
        This run's entry in the lock file.

    Raises
    ------
    OutputLockedError
        Another run that is still alive holds the directory (the message names it).
    ValueError
        The directory cannot be created or written (:func:`check_output_directory`).
    """
    directory = check_output_directory(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = _acquire(path)
    try:
        previous = _read_owner(fd)
        if previous is not None:
            logger.warning(
                "%s: taking over the lock of %s, whose process is gone (killed or crashed)",
                directory, previous.describe(),
            )
        owner = LockOwner(
            run_id=run_id,
            pid=os.getpid(),
            host=socket.gethostname(),
            started_utc=_utc_now().isoformat(timespec="seconds").replace("+00:00", ""),
            command=" ".join(sys.argv) or sys.executable,
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(owner)).encode(), 0)
        recover(directory)
        yield owner
    finally:
        # Removed while still locked, so a run waiting on this file notices (see _acquire).
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


def _seal(staging: Path, name: str, run_id: str) -> None:
    """Write the manifest of every (non-hidden) file in ``staging``: the set's commit point."""
    files = {}
    for entry in sorted(staging.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_file():
            raise ValueError(f"{entry}: a result set holds plain files only, not folders")
        files[entry.name] = {"bytes": entry.stat().st_size, "sha256": file_sha256(entry)}
    manifest = {
        "format": _MANIFEST_FORMAT,
        "format_version": _MANIFEST_VERSION,
        "name": name,
        "run_id": run_id,
        "created_utc": _utc_now().isoformat(timespec="seconds"),
        "files": files,
    }
    with atomic_path(staging / _SEALED) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def _publish(staging: Path, directory: Path) -> dict:
    """Replace the published set by the sealed one in ``staging``; safe to repeat after a kill."""
    manifest = json.loads((staging / _SEALED).read_text(encoding="utf-8"))
    published = directory / f"{manifest['name']}{MANIFEST_SUFFIX}"
    previous = staging / _PREVIOUS
    if published.exists() and not previous.exists():
        os.replace(published, previous)  # from here on the old set is no longer published
    if previous.exists():
        old_files = json.loads(previous.read_text(encoding="utf-8")).get("files", {})
        for name in old_files:
            if name not in manifest["files"]:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(directory / name)
    for name in manifest["files"]:
        if (staging / name).exists():
            os.replace(staging / name, directory / name)
    os.replace(staging / _SEALED, published)
    shutil.rmtree(staging)
    return manifest


@contextlib.contextmanager
def staged_result_set(directory: str | os.PathLike, name: str, run_id: str) -> Iterator[Path]:
    """Yield a staging folder; what is written there is published as the set ``name``.

    Write each output into the yielded folder under its final file name.  If the body raises,
    the folder is removed and the published set is untouched.  Otherwise the files are sealed
    with a manifest and published into ``directory`` (see the module docstring for what a
    reader sees meanwhile); files of the previous set ``name`` that the new one lacks are
    removed.  Hold :func:`lock_directory` on ``directory`` around it.

    Parameters
    ----------
    directory : path-like
        Output directory.
    name : str
        Name of the set: the manifest is ``<directory>/<name>.manifest.json``.
    run_id : str
        Identifier of the run, recorded in the manifest.

    Yields
    ------
    pathlib.Path
        The staging folder (same file system as ``directory``, so publishing is renames only).
    """
    directory = Path(directory)
    staging = directory / f"{_STAGING_PREFIX}{name}-{run_id}"
    staging.mkdir(parents=True)
    try:
        yield staging
        _seal(staging, name, run_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _publish(staging, directory)
    logger.debug("published result set %s of run %s in %s", name, run_id, directory)


def recover(directory: str | os.PathLike) -> None:
    """Finish or discard what interrupted runs left in ``directory`` (hold its lock first).

    A sealed staging folder (its run was killed while publishing) is published; an unsealed
    one (killed while writing) is removed, and so are temporary ``*.tmp`` files.  Only the
    directory itself is looked at, not its subfolders (a scan's points have their own locks).
    """
    directory = Path(directory)
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(_STAGING_PREFIX) and entry.is_dir():
            if (entry / _SEALED).is_file():
                manifest = _publish(entry, directory)
                logger.warning(
                    "%s: finished publishing result set %s of run %s, which was interrupted",
                    directory, manifest["name"], manifest["run_id"],
                )
            else:
                logger.warning("%s: removing %s, left by an interrupted run", directory, entry.name)
                shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.endswith(".tmp") and entry.is_file():
            logger.info("%s: removing the temporary file %s of an interrupted run", directory, entry.name)
            entry.unlink(missing_ok=True)


def read_manifest(directory: str | os.PathLike, name: str) -> dict | None:
    """The published manifest of set ``name`` in ``directory``, or None if there is none."""
    path = Path(directory) / f"{name}{MANIFEST_SUFFIX}"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise ValueError(f"{path} is not a readable result-set manifest: {err}") from None
    if manifest.get("format") != _MANIFEST_FORMAT or "files" not in manifest:
        raise ValueError(f"{path} is not a gwtools result-set manifest")
    return manifest


def _being_published(directory: Path, name: str) -> bool:
    """Whether a sealed set ``name`` waits in a staging folder (publication begun, unfinished)."""
    for entry in directory.glob(f"{_STAGING_PREFIX}*"):
        with contextlib.suppress(OSError, ValueError):
            if json.loads((entry / _SEALED).read_text(encoding="utf-8"))["name"] == name:
                return True
    return False


def _check_file(directory: Path, filename: str, entry: dict, manifest: dict) -> None:
    path = directory / filename
    if not path.is_file():
        raise ValueError(
            f"{path} is missing from result set {manifest['name']} of run {manifest['run_id']}: "
            "rerun the analysis"
        )
    if path.stat().st_size != entry["bytes"] or file_sha256(path) != entry["sha256"]:
        raise ValueError(
            f"{path} is not the file that run {manifest['run_id']} published with "
            f"{manifest['name']}{MANIFEST_SUFFIX}: the directory mixes outputs of different "
            "runs; rerun the analysis"
        )


def verify_result_set(directory: str | os.PathLike, name: str) -> dict:
    """Check that set ``name`` in ``directory`` is published and whole; return its manifest.

    Raises
    ------
    ValueError
        No manifest (never published, or a publication was interrupted), or a listed file is
        missing or differs from what the run published.
    """
    directory = Path(directory)
    manifest = read_manifest(directory, name)
    if manifest is None:
        state = "is being published" if _being_published(directory, name) else "was never published"
        raise ValueError(
            f"result set {name} in {directory} {state} (no {name}{MANIFEST_SUFFIX}): wait for "
            "the run writing it, or rerun it; an interrupted publication is completed by the "
            "next gwtools run in that directory"
        )
    for filename, entry in manifest["files"].items():
        _check_file(directory, filename, entry, manifest)
    return manifest


def verify_member(path: str | os.PathLike, name: str) -> str | None:
    """Check one file against the manifest of its set; return the set's run id.

    A file without a manifest beside it (one copied on its own, or written by older code) is
    accepted with a log message, unless a publication of its set is in progress or was
    interrupted there.

    Parameters
    ----------
    path : path-like
        File to check.
    name : str
        Name of the set it belongs to.

    Returns
    -------
    str or None
        The run id of the set, or None if there is no manifest.

    Raises
    ------
    ValueError
        The set is being published, the file is not part of it, or it differs from what was
        published (outputs of different runs mixed).
    """
    path = Path(path)
    directory = path.parent
    manifest = read_manifest(directory, name)
    if manifest is None:
        if _being_published(directory, name):
            raise ValueError(
                f"{path}: its result set {name} is being published, or its publication was "
                "interrupted: wait for the run writing it; an interrupted publication is "
                "completed by the next gwtools run in that directory"
            )
        logger.info("%s: no %s%s beside it, so it is read unverified", path, name, MANIFEST_SUFFIX)
        return None
    entry = manifest["files"].get(path.name)
    if entry is None:
        raise ValueError(
            f"{path} is not part of result set {name} of run {manifest['run_id']} "
            f"(it lists {', '.join(manifest['files'])}): it is left from another run"
        )
    _check_file(directory, path.name, entry, manifest)
    return manifest["run_id"]
