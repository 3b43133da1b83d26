"""``gwtools fetch`` and ``[data] directory`` offline: only the network transport is replaced.

requests' ``HTTPAdapter.send`` (the call that would open a socket) answers from
``tests/data/gwosc_api_answers.json`` (GWOSC API v2 answers) and serves the GWOSC files shipped
in ``data/`` for download URLs, honouring HTTP range requests.  The gwosc client, requests'
sessions and responses and all of gwtools run as they would against gwosc.org.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from gwtools.cli import main
from gwtools.io.fetch import (
    MANIFEST_NAME,
    fetch_strain,
    find_strain_files,
    read_manifest,
)
from gwtools.ringdown.config import config_to_dict, override, parse_config

ANSWERS = Path(__file__).resolve().parent / "data" / "gwosc_api_answers.json"
GW170814_FILES = {
    det: f"{det[0]}-{det}_GWOSC_4KHZ_R1-1186741846-32.hdf5" for det in ("H1", "L1", "V1")
}


def _key(url: str) -> tuple[str, tuple]:
    parts = urlsplit(url)
    return parts.netloc + parts.path, tuple(sorted(parse_qsl(parts.query)))


class _BreakingStream(io.BytesIO):
    """A response body whose connection drops after ``limit`` bytes."""

    def __init__(self, body: bytes, limit: int):
        super().__init__(body)
        self.limit = limit

    def read(self, size=-1):
        if self.tell() >= self.limit:
            raise requests.exceptions.ChunkedEncodingError("connection reset by peer")
        size = self.limit - self.tell() if size is None or size < 0 else min(size, self.limit - self.tell())
        return super().read(size)


class FakeGwosc:
    """Stands in for the network behind requests' transport adapter."""

    def __init__(self, project_data: Path):
        answers = json.loads(ANSWERS.read_text())
        self.answers = {_key(url): body for url, body in answers.items() if url.startswith("http")}
        self.files = {
            path.name: path
            for path in sorted(project_data.glob("GW*/*.hdf5"))
        }
        self.log: list[tuple[str, str | None]] = []  # (url, Range header)
        self.ignore_range = False
        self.break_after: dict[str, int] = {}  # file name -> bytes served before the drop
        self.substitute: dict[str, str] = {}  # file name -> file served instead

    def downloads(self) -> list[tuple[str, str | None]]:
        return [(Path(urlsplit(url).path).name, rng) for url, rng in self.log if url.endswith(".hdf5")]

    def send(self, request, **kwargs) -> requests.Response:
        range_header = request.headers.get("Range")
        self.log.append((request.url, range_header))
        response = requests.Response()
        response.url, response.request, response.encoding = request.url, request, "utf-8"
        response.headers = CaseInsensitiveDict()
        name = Path(urlsplit(request.url).path).name
        if name.endswith(".hdf5") and name in self.files:
            body = self.files[self.substitute.get(name, name)].read_bytes()
            start = 0
            if range_header and not self.ignore_range:
                start = int(range_header.removeprefix("bytes=").rstrip("-"))
                if start >= len(body):
                    response.status_code, response.raw = 416, io.BytesIO(b"")
                    return response
                response.status_code = 206
                response.headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            else:
                response.status_code = 200
            response.headers["Content-Length"] = str(len(body) - start)
            limit = self.break_after.get(name)
            tail = body[start:]
            response.raw = io.BytesIO(tail) if limit is None else _BreakingStream(tail, limit - start)
            return response
        answer = self.answers.get(_key(request.url))
        response.status_code = 404 if answer is None else 200
        payload = {"detail": "Not found."} if answer is None else answer
        response.headers["Content-Type"] = "application/json"
        response.raw = io.BytesIO(json.dumps(payload).encode())
        return response


@pytest.fixture
def gwosc(monkeypatch, project_data):
    import gwosc.api.v2

    server = FakeGwosc(project_data)
    monkeypatch.setattr(
        requests.adapters.HTTPAdapter, "send", lambda _adapter, request, **kw: server.send(request, **kw)
    )
    # the gwosc client keeps every JSON answer of the process in memory: start each test afresh
    monkeypatch.setattr(gwosc.api.v2, "JSON_CACHE", {})
    return server


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_an_event_downloads_checks_and_records_every_file(gwosc, tmp_path, project_data):
    out = tmp_path / "raw"
    assert main(["fetch", "GW170814", "--detectors", "H1,L1,V1", "--duration", "32", "--out", str(out)]) == 0
    manifest = read_manifest(out)
    for det, name in GW170814_FILES.items():
        shipped = project_data / "GW170814" / name
        assert _sha256(out / name) == _sha256(shipped)  # the bytes the server sent, unchanged
        assert manifest[name]["sha256"] == _sha256(shipped)
        assert (manifest[name]["detector"], manifest[name]["gps_start"], manifest[name]["duration"]) == (
            det, 1186741846, 32)
    assert sorted(p.name for p in out.iterdir()) == sorted([*GW170814_FILES.values(), MANIFEST_NAME])
    assert [name for name, _ in gwosc.downloads()] == list(GW170814_FILES.values())
    # a second fetch downloads nothing: the files are there and match their checksums
    gwosc.log.clear()
    result = fetch_strain("GW170814", ["H1", "L1", "V1"], out=out)
    assert result.downloaded == () and not gwosc.downloads()
    assert result.gps == 1186741861.53 and result.files["V1"] == (out / GW170814_FILES["V1"],)


def test_a_partial_download_is_resumed_with_a_range_request(gwosc, tmp_path, project_data):
    name = GW170814_FILES["V1"]
    body = (project_data / "GW170814" / name).read_bytes()
    (tmp_path / f".{name}.part").write_bytes(body[:300_000])
    fetch_strain("GW170814", ["V1"], out=tmp_path)
    assert gwosc.downloads() == [(name, "bytes=300000-")]
    assert (tmp_path / name).read_bytes() == body
    assert not list(tmp_path.glob(".*.part"))


def test_a_server_without_ranges_restarts_the_download(gwosc, tmp_path, project_data):
    name = GW170814_FILES["H1"]
    body = (project_data / "GW170814" / name).read_bytes()
    (tmp_path / f".{name}.part").write_bytes(b"stale bytes of an older file")
    gwosc.ignore_range = True
    fetch_strain("GW170814", ["H1"], out=tmp_path)
    assert (tmp_path / name).read_bytes() == body


def test_an_interrupted_download_keeps_its_part_and_the_next_run_finishes_it(
    gwosc, tmp_path, capsys, project_data
):
    name = GW170814_FILES["L1"]
    body = (project_data / "GW170814" / name).read_bytes()
    gwosc.break_after[name] = 400_000
    args = ["fetch", "GW170814", "--detectors", "L1", "--out", str(tmp_path)]
    assert main(args) == 1
    assert "run the same command again to resume" in capsys.readouterr().err
    assert not (tmp_path / name).exists()  # nothing truncated under the final name
    assert (tmp_path / f".{name}.part").stat().st_size == 400_000
    del gwosc.break_after[name]
    assert main(args) == 0
    assert gwosc.downloads()[-1] == (name, "bytes=400000-")
    assert (tmp_path / name).read_bytes() == body


def test_a_download_that_is_not_the_expected_file_is_refused(gwosc, tmp_path, capsys):
    gwosc.substitute[GW170814_FILES["H1"]] = GW170814_FILES["L1"]  # the server sends L1 data
    assert main(["fetch", "GW170814", "--detectors", "H1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "detector L1, not H1" in err and "Traceback" not in err
    assert not [p for p in tmp_path.iterdir() if p.name != MANIFEST_NAME]


def test_a_modified_file_fails_its_checksum_and_is_downloaded_again(gwosc, tmp_path, project_data):
    fetch_strain("GW170814", ["H1", "L1"], out=tmp_path)
    path = tmp_path / GW170814_FILES["H1"]
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="differs from its sha256"):
        find_strain_files(tmp_path, ["H1", "L1"], 1186741850.0, 1186741870.0, event="GW170814")
    gwosc.log.clear()
    fetch_strain("GW170814", ["H1", "L1"], out=tmp_path)
    assert [name for name, _ in gwosc.downloads()] == [GW170814_FILES["H1"]]
    assert _sha256(path) == _sha256(project_data / "GW170814" / GW170814_FILES["H1"])


def test_a_gps_time_takes_the_shortest_files_that_cover_the_span(gwosc, tmp_path):
    # GWOSC lists a 32 s and a 4096 s V1 file around this time; 16 s fit in the 32 s one
    result = fetch_strain("1186741861.53", ["V1"], out=tmp_path, duration=16)
    assert result.event is None
    assert [name for name, _ in gwosc.downloads()] == [GW170814_FILES["V1"]]
    assert any("min-gps-time=1186741853" in url for url, _ in gwosc.log)


def test_bad_targets_and_options_are_one_clear_line(gwosc, tmp_path, capsys):
    assert main(["fetch", "GW000000", "--detectors", "H1", "--out", str(tmp_path)]) == 2
    assert "GWOSC knows no event 'GW000000'" in capsys.readouterr().err
    assert main(["fetch", "GW170814", "--detectors", "X7", "--out", str(tmp_path)]) == 2
    assert "unknown detector 'X7'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="positive whole number"):
        fetch_strain("GW170814", ["H1"], out=tmp_path, duration=0)


# --------------------------------------------------------------------------------------------
# [data] event / directory in a run configuration

RAW = {
    "data": {"detectors": ["H1", "L1", "V1"], "event": "GW170814", "directory": "raw"},
    "event": {"name": "GW170814", "time": 1186741861.53, "reference_detector": "H1",
              "ra": 0.8, "dec": -0.83, "psi": 2.36},
    "analysis": {"duration": 0.1, "sample_rate": 2048.0},
    "noise": {"offsource": [-14.0, -1.0]},
    "output": {"directory": "out"},
}


def test_a_config_finds_its_files_in_a_fetched_directory(gwosc, tmp_path):
    fetch_strain("GW170814", ["H1", "L1", "V1"], out=tmp_path / "raw")
    config = parse_config(RAW, base_dir=tmp_path)
    assert {d: p.name for d, p in config.data.files.items()} == GW170814_FILES
    assert list(config.data.files) == ["H1", "L1", "V1"]
    # the recorded configuration keeps the directory, and reading it back finds the same files
    raw = config_to_dict(config)
    assert "files" not in raw["data"] and raw["data"]["directory"] == str(tmp_path / "raw")
    assert parse_config(raw) == config
    assert override(config, {"analysis": {"duration": 0.2}}).data.files == config.data.files


def test_missing_files_name_the_fetch_command_to_run(gwosc, tmp_path):
    fetch_strain("GW170814", ["H1", "L1"], out=tmp_path / "raw")
    with pytest.raises(FileNotFoundError) as err:
        parse_config(RAW, base_dir=tmp_path)
    assert str(err.value).startswith(f"[data] directory: {tmp_path / 'raw'} holds no V1 strain file")
    assert f"gwtools fetch GW170814 --detectors V1 --duration 32 --out {tmp_path / 'raw'}" in str(err.value)
    # an off-source window beyond the 32 s files asks for the 4096 s ones
    longer = copy.deepcopy(RAW)
    longer["noise"]["offsource"] = [-100.0, -1.0]
    with pytest.raises(FileNotFoundError, match="--detectors H1,L1,V1 --duration 4096"):
        parse_config(longer, base_dir=tmp_path)
    absent = copy.deepcopy(RAW)
    absent["data"]["directory"] = "nowhere"
    with pytest.raises(FileNotFoundError, match="does not exist; download them with: gwtools fetch"):
        parse_config(absent, base_dir=tmp_path)


def test_data_section_rules(tmp_path):
    both = copy.deepcopy(RAW)
    both["data"]["files"] = {"H1": "h1.hdf5"}
    with pytest.raises(ValueError, match=r"\[data\] files: give either files .* or directory"):
        parse_config(both, base_dir=tmp_path)
    unlisted = copy.deepcopy(RAW)
    del unlisted["data"]["detectors"]
    with pytest.raises(ValueError, match=r"\[data\] detectors: required with directory"):
        parse_config(unlisted, base_dir=tmp_path)
    stray = {**RAW, "data": {"files": {"H1": "h1.hdf5"}, "event": "GW170814"}}
    with pytest.raises(ValueError, match=r"\[data\] event: names the event of a \[data\] directory"):
        parse_config(stray, base_dir=tmp_path)
