"""Run configuration: shipped configs, validation messages, start-time resolution, round trips."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import astropy.constants as const
import pytest

from gwtools.ringdown.config import (
    config_to_dict,
    load_config,
    load_scan_config,
    override,
    parse_config,
    start_offset_seconds,
)

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"

BASE = {
    "data": {"detectors": ["H1", "L1"], "files": {"H1": "h1.hdf5", "L1": "l1.hdf5"}},
    "event": {"name": "X", "time": 1126259462.423, "reference_detector": "H1",
              "ra": 1.95, "dec": -1.27, "psi": 0.82},
    "analysis": {"start_offset_ms": 1.0, "duration": 0.2, "sample_rate": 2048.0},
    "model": {"modes": ["220", "221"]},
    "prior": {"final_mass": [35.0, 140.0], "final_spin": [0.0, 0.99], "amplitude_max": 1e-20},
    "sampler": {"nlive": 100},
    "output": {"directory": "out"},
}


def with_change(section: str, key: str, value, **more) -> dict:
    raw = copy.deepcopy(BASE)
    raw.setdefault(section, {})[key] = value
    raw[section].update(more)
    return raw


def test_shipped_configs_load_with_published_event_values():
    main = load_config(PIPELINES / "gw150914.toml")
    late = load_config(PIPELINES / "gw150914_220.toml")
    scan = load_scan_config(PIPELINES / "gw150914_scan.toml")
    for config in (main, late, scan.run):
        # Isi et al. 2019 (PRL 123, 111102): t_H1 = 1126259462.423, ra 1.95, dec -1.27, psi 0.82
        assert config.event.time == 1126259462.423
        assert config.event.reference_detector == "H1"
        assert (config.event.ra, config.event.dec, config.event.psi) == (1.95, -1.27, 0.82)
        assert config.data.detectors == ("H1", "L1")
        assert all(path.is_file() for path in config.data.files.values())
        assert config.data.imr_samples.is_file()
    assert main.model.modes == ("220", "221") and start_offset_seconds(main) == 0.0
    assert main.sampler.nlive == 1000 and main.sampler.dlogz == 0.1
    assert late.model.modes == ("220",) and start_offset_seconds(late) == pytest.approx(3e-3)
    assert scan.mode_sets == (("220",), ("220", "221"))
    assert scan.start_key == "start_offset_ms" and scan.starts[0] == 0.0 and scan.starts[-1] == 10.0


def test_relative_paths_resolve_against_the_config_directory(tmp_path):
    sub = tmp_path / "configs"
    sub.mkdir()
    text = (
        '[data]\nfiles = { H1 = "../strain/h1.hdf5" }\n'
        '[event]\ntime = 1e9\nra = 1.0\ndec = 0.1\npsi = 0.0\n'
        '[output]\ndirectory = "runs"\n'
    )
    (sub / "run.toml").write_text(text)
    config = load_config(sub / "run.toml")
    assert config.data.files["H1"] == (tmp_path / "strain" / "h1.hdf5").resolve()
    assert config.output.directory == (sub / "runs").resolve()
    assert config.output.label == "event_220"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (with_change("prior", "final_spin", [0.0, 1.2]), r"\[prior\] final_spin: upper bound 1.2 > 0.99"),
        (with_change("prior", "final_spin", [-0.1, 0.9]), r"\[prior\] final_spin: lower bound -0.1 < 0.0"),
        (with_change("prior", "final_mass", [100.0, 50.0]), r"\[prior\] final_mass: lower bound"),
        (with_change("prior", "final_mass", [0.0, 50.0]), r"\[prior\] final_mass"),
        (with_change("prior", "amplitude_max", -1.0), r"\[prior\] amplitude_max: must be > 0"),
        (with_change("prior", "cos_inclination", 1.5), r"\[prior\] cos_inclination"),
        (with_change("prior", "quadrature", "gaussian"), r"\[prior\] quadrature_scale: required"),
        (with_change("prior", "quadrature", "uniform"), r"\[prior\] quadrature: 'uniform'"),
        (with_change("event", "dec", 2.0), r"\[event\] dec"),
        (with_change("event", "ra", -0.5), r"\[event\] ra"),
        (with_change("event", "reference_detector", "V1"), r"\[event\] reference_detector"),
        (with_change("event", "time", "soon"), r"\[event\] time: expected a number"),
        (with_change("analysis", "duration", -0.2), r"\[analysis\] duration: must be > 0"),
        (with_change("analysis", "f_high", 1500.0), r"\[analysis\] f_high: 1500.0 Hz > Nyquist"),
        (with_change("analysis", "f_low", 2000.0), r"\[analysis\] f_low"),
        (with_change("analysis", "start_offset_m", 10.0), r"\[analysis\] start_offset_m: give only one"),
        (with_change("model", "modes", ["220", "2x1"]), r"\[model\] modes: '2x1'"),
        (with_change("model", "modes", ["220", "220"]), r"\[model\] modes: repeated"),
        (with_change("model", "modes", ["230"]), r"\[model\] modes: '230' has \|m\| > l"),
        (with_change("model", "modes", ["220", "990"]),
         r"\[model\] modes: '990' is not in the QNM table \(available: 200, .*, 220, 221, .*, 550\)"),
        (with_change("data", "on_bad_data", "ignore"),
         r"\[data\] on_bad_data: 'ignore' is not one of refuse, warn"),
        (with_change("model", "polarization", "circular"), r"\[model\] polarization"),
        (with_change("sampler", "nlive", 100.5), r"\[sampler\] nlive: expected an integer"),
        (with_change("sampler", "nlive", True), r"\[sampler\] nlive: expected an integer"),
        (with_change("sampler", "sample", "hmc", engine="dynesty"), r"\[sampler\] sample: 'hmc' is not one of"),
        (with_change("sampler", "engine", "emcee"), r"\[sampler\] engine: 'emcee' is not one of"),
        (with_change("sampler", "queue_size", 8),
         r"\[sampler\] queue_size: a setting of engine 'dynesty', not used by engine 'blackjax'"),
        (with_change("sampler", "num_delete", 8, engine="dynesty"),
         r"\[sampler\] num_delete: a setting of engine 'blackjax'"),
        (with_change("sampler", "num_delete", 100), r"\[sampler\] num_delete: must lie in \[1, nlive - 1"),
        (with_change("sampler", "num_inner_steps", 0), r"\[sampler\] num_inner_steps: must be >= 1"),
        (with_change("sampler", "ellipsoid", "no"), r"\[sampler\] ellipsoid: expected true or false"),
        (with_change("sampler", "ellipsoid", False, engine="dynesty"),
         r"\[sampler\] ellipsoid: a setting of engine 'blackjax'"),
        (with_change("sampler", "checkpoint_every", -1.0), r"\[sampler\] checkpoint_every: must be >= 0"),
        (with_change("sampler", "seed", -1), r"\[sampler\] seed: must be >= 0"),
        (with_change("sampler", "nlive", 5), r"\[sampler\] nlive: must be >= 10"),
        (with_change("event", "ra", 7.0), r"\[event\] ra: 7.0 is outside \[0, 2 pi\] rad"),
        (with_change("noise", "asd", "yes"), r"\[noise\] asd: expected true or false"),
        (with_change("noise", "method", "acf_file"), r"\[noise\] acf_files: no ACF file"),
        (with_change("noise", "welch_segment", 30.0), r"\[noise\] welch_segment"),
        (with_change("noise", "offsource", [-5.0, 0.1]), r"\[noise\] offsource: window \[-5.0, 0.1\] s overlaps"),
        (with_change("data", "detectors", ["H1", "V1"]), r"\[data\] files: no strain file for detector\(s\) V1"),
        (with_change("output", "label", "a/b"), r"\[output\] label"),
    ],
)
def test_impossible_values_are_rejected_naming_the_key(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_config(raw)


def test_sampler_section_is_the_sampler_settings():
    from gwtools.ringdown.sampling import SamplerSettings

    # one set of defaults: what the section leaves out is what SamplerSettings gives
    assert parse_config(BASE).sampler == SamplerSettings(nlive=100)
    dynesty = parse_config(with_change("sampler", "engine", "dynesty", sample="rwalk", queue_size=16)).sampler
    assert (dynesty.engine, dynesty.sample, dynesty.queue_size, dynesty.bound) == ("dynesty", "rwalk", 16, None)
    assert dynesty.resolved(2).bound == "multi"
    blackjax = parse_config(with_change("sampler", "num_delete", 10, num_inner_steps=4, maxcall=5000)).sampler
    assert (blackjax.num_delete, blackjax.num_inner_steps, blackjax.maxcall) == (10, 4, 5000)
    assert blackjax.resolved(2).ellipsoid is True
    assert parse_config(with_change("sampler", "ellipsoid", False)).sampler.resolved(2).ellipsoid is False
    assert parse_config(config_to_dict(parse_config(with_change("sampler", "num_delete", 10)))).sampler.num_delete == 10


def test_left_out_keys_take_the_dataclass_defaults():
    from gwtools.ringdown.config import AnalysisConfig, ModelConfig, NoiseConfig, PriorConfig
    from gwtools.ringdown.sampling import SamplerSettings

    raw = {"data": BASE["data"], "event": {k: BASE["event"][k] for k in ("time", "ra", "dec", "psi")}}
    config = parse_config(raw, base_dir="/data")
    assert (config.analysis, config.noise, config.model) == (AnalysisConfig(), NoiseConfig(), ModelConfig())
    assert (config.prior, config.sampler) == (PriorConfig(), SamplerSettings())
    assert (config.event.name, config.event.reference_detector) == ("event", "geocenter")
    assert config.output.directory == Path("/data/results") and config.output.label == "event_220"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (with_change("prior", "final_spn", [0.0, 0.9]), r"\[prior\] final_spn: unknown key"),
        (with_change("sampler", "n_live", 100), r"\[sampler\] n_live: unknown key"),
        (with_change("samplers", "nlive", 100), r"\[samplers\]: unknown section"),
        (with_change("Event", "ra", 1.0), r"\[Event\]: unknown section"),
    ],
)
def test_unknown_keys_and_sections_are_rejected(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_config(raw)


def test_missing_required_values_are_named():
    raw = copy.deepcopy(BASE)
    del raw["event"]["ra"]
    with pytest.raises(ValueError, match=r"\[event\] ra: missing"):
        parse_config(raw)
    raw = copy.deepcopy(BASE)
    del raw["data"]
    with pytest.raises(ValueError, match=r"\[data\]: section is missing"):
        parse_config(raw)
    raw = with_change("analysis", "start_offset_m", 10.0)
    del raw["analysis"]["start_offset_ms"]
    with pytest.raises(ValueError, match=r"\[analysis\] reference_mass: required"):
        parse_config(raw)


def test_start_offsets_in_ms_mass_units_and_gps():
    raw = with_change("analysis", "start_offset_m", 10.0)
    del raw["analysis"]["start_offset_ms"]
    raw["analysis"]["reference_mass"] = 68.5
    # independent value of G M_sun / c^3 from astropy's constants
    t_sun = (const.G * const.M_sun / const.c**3).to_value("s")
    assert start_offset_seconds(parse_config(raw)) == pytest.approx(10 * 68.5 * t_sun, rel=1e-9)
    assert 10 * 68.5 * t_sun == pytest.approx(3.37e-3, rel=1e-2)
    raw = with_change("analysis", "start_time", 1126259462.433)
    del raw["analysis"]["start_offset_ms"]
    assert start_offset_seconds(parse_config(raw)) == pytest.approx(0.010, abs=1e-6)
    raw = copy.deepcopy(BASE)
    del raw["analysis"]["start_offset_ms"]
    assert start_offset_seconds(parse_config(raw)) == 0.0


def test_round_trip_and_override_revalidate():
    config = parse_config(BASE, base_dir="/data")
    again = parse_config(config_to_dict(config))
    assert again == config
    changed = override(config, {"sampler": {"nlive": 50}, "analysis": {"start_time": 1126259462.5}})
    assert changed.sampler.nlive == 50
    assert changed.analysis.start_offset_ms is None
    assert start_offset_seconds(changed) == pytest.approx(0.077, abs=1e-6)
    assert config.sampler.nlive == 100  # the original is untouched
    assert override(config, {"model": {"modes": ["220"]}}).output.label == "X_220"
    named = override(config, {"output": {"label": "mine"}})
    assert override(named, {"model": {"modes": ["220"]}}).output.label == "mine"
    with pytest.raises(ValueError, match=r"\[prior\] final_spin: upper bound 1.0 > 0.99"):
        override(config, {"prior": {"final_spin": [0.0, 1.0]}})
    with pytest.raises(ValueError, match=r"\[priors\]: unknown section"):
        override(config, {"priors": {}})


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nfiles = 1\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)


def test_scan_section(tmp_path):
    text = (PIPELINES / "gw150914_scan.toml").read_text()
    scan = text.replace("start_offsets_ms = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]",
                        "start_offsets_m = [0.0, 10.0]")
    scan = scan.replace("[analysis]", "[analysis]\nreference_mass = 68.5", 1)
    path = tmp_path / "scan.toml"
    path.write_text(scan.replace('"../', f'"{PIPELINES.parent}/'))
    config = load_scan_config(path)
    t_sun_ms = 1e3 * (const.G * const.M_sun / const.c**3).to_value("s")
    assert config.start_key == "start_offset_m" and config.starts == (0.0, 10.0)
    point = override(config.run, {"analysis": {config.start_key: config.starts[1]}})
    assert 1e3 * start_offset_seconds(point) == pytest.approx(10 * 68.5 * t_sun_ms)
    path.write_text(text.replace('mode_sets = [["220"], ["220", "221"]]', 'mode_sets = [["220"]]'))
    with pytest.raises(ValueError, match=r"\[scan\] mode_sets"):
        load_scan_config(path)
    path.write_text(text.replace("retries = 1", "retries = 1\nworkers = 4"))
    with pytest.raises(ValueError, match=r"\[scan\] workers: unknown key"):
        load_scan_config(path)
    with pytest.raises(ValueError, match=r"\[scan\]: section is missing"):
        load_scan_config(PIPELINES / "gw150914.toml")
    assert math.isfinite(config.run.event.time)


def test_reading_a_configuration_loads_no_jax_torch_or_matplotlib():
    # a fresh interpreter: the configuration, the sampler settings and the mode table without JAX
    code = (
        "import sys\n"
        "from gwtools.ringdown.config import load_config\n"
        f"config = load_config({str(PIPELINES / 'gw150914.toml')!r})\n"
        "assert config.sampler.engine == 'blackjax' and config.model.modes == ('220', '221')\n"
        "print(sorted(name for name in ('jax', 'torch', 'matplotlib') if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=PIPELINES.parent, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
