"""Sampling the sky angles and the start time: polarization, inclination, start window."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.linalg
from helpers import damped_cosine_acf

from gwtools.io.strain import TimeSeries
from gwtools.ringdown.baseline import FullLikelihood
from gwtools.ringdown.conditioning import extract_segment
from gwtools.ringdown.firefly import FireflyLikelihood, QuadraturePrior, marginal_log_likelihood
from gwtools.ringdown.likelihood import build_analysis_data, log_noise_evidence, projections
from gwtools.ringdown.model import AMPLITUDE_UNIT, RingdownModel
from gwtools.ringdown.modes import parse_modes
from gwtools.ringdown.pipeline import cut_segments
from gwtools.ringdown.qnm import frequency_damping_time
from gwtools.ringdown.reference import reference_log_likelihood, reference_template

RATE = 2048.0
N = 96
DT = 1.0 / RATE
DETECTORS = ("H1", "L1", "V1")
ANTENNA = np.array([[0.55, -0.31], [-0.42, 0.37], [0.18, 0.62]])
# configured starts with different offsets from the sample grid (t0 = 100 s: exact sample times)
STARTS = {"H1": 100.1 + 0.2 * DT, "L1": 100.0931 + 0.55 * DT, "V1": 100.1112 + 0.93 * DT}
WINDOW = (-1.3e-3, 0.8e-3)
MODES = ("220", "221")


def _rotated(antenna, psi):
    """(F_plus, F_cross) at psi from psi = 0 (LAL/bilby convention), in numpy."""
    c, s = np.cos(2 * psi), np.sin(2 * psi)
    return np.stack([antenna[:, 0] * c + antenna[:, 1] * s, -antenna[:, 0] * s + antenna[:, 1] * c], axis=-1)


NOISE = (
    (1.2e-21, 3e-3, 150.0),
    (0.9e-21, 2e-3, 90.0),
    (1.6e-21, 1e-3, 250.0),
)  # ACF (sigma, tau, f0) per detector


def _strain(seed, modes, final_mass, final_spin, amplitudes, phases, antenna, inclination, delay=0.0):
    """0.25 s of each detector's coloured noise (t0 = 100 s) with a ringdown from STARTS + delay.

    Returns the strain per detector and the ACFs (n_det, N) of the analysis segments.
    """
    rng = np.random.default_rng(seed)
    freqs, taus = (np.asarray(x) for x in frequency_damping_time(parse_modes(modes), final_mass, final_spin))
    times = 100.0 + np.arange(512) * DT
    strain = {}
    for i, det in enumerate(DETECTORS):
        noise = np.linalg.cholesky(
            scipy.linalg.toeplitz(damped_cosine_acf(512, RATE, *NOISE[i]))
        ) @ rng.standard_normal(512)
        signal = reference_template(
            times - STARTS[det] - delay,
            freqs,
            taus,
            np.asarray(amplitudes) * AMPLITUDE_UNIT,
            phases,
            antenna[i],
            ms=[int(m[1]) for m in modes],
            inclination=inclination,
        )
        strain[det] = TimeSeries(noise + signal, 100.0, RATE, det)
    return strain, np.stack([damped_cosine_acf(N, RATE, *p) for p in NOISE])


@pytest.fixture(scope="module")
def window_setup():
    """Three detectors' coloured noise with a 220 + 221 ringdown starting at STARTS."""
    return _strain(3, MODES, 66.0, 0.68, [6.0, 3.0], [0.4, 2.1], _rotated(ANTENNA, 0.7), 2.2)


def test_start_window_likelihood_is_the_fixed_start_likelihood_of_the_segment_cut_there(window_setup):
    strain, acfs = window_setup
    _, times, stretch = cut_segments(strain, STARTS, N * DT, WINDOW)
    data = build_analysis_data(times, stretch, acfs, ANTENNA, DETECTORS, start_window=WINDOW)
    grid = times[:, 0]
    # starts on the sample grid of each detector (at the window's ends too) and between samples
    on_grid = [k * DT - g for g in grid for k in (-2, 0, 1) if WINDOW[0] <= k * DT - g <= WINDOW[1]]
    shifts = np.array(on_grid + [WINDOW[0], WINDOW[1], 0.0, -0.77e-3, 0.123e-3, 0.61e-3])
    # beyond the window no segment was prepared: -inf, not a clipped neighbour
    outside = np.array([WINDOW[0] - 1e-5, WINDOW[1] + 1e-5])
    model = RingdownModel(parse_modes(MODES))
    rng = np.random.default_rng(8)
    n = shifts.size + outside.size
    theta = np.column_stack(
        [
            rng.uniform(55, 80, n),
            rng.uniform(0.3, 0.9, n),
            rng.uniform(0.2, 3.0, n),
            rng.uniform(0, np.pi, n),
            np.concatenate([shifts, outside]),
        ]
    )
    amplitudes, phases = rng.uniform(1, 8, (n, 2)), rng.uniform(0, 2 * np.pi, (n, 2))
    names = ("final_mass", "final_spin", "inclination", "polarization", "start_shift")
    prior = QuadraturePrior("flat", amplitude_max=40.0)
    marginal = FireflyLikelihood(model, data, names, prior=prior)(theta)
    full = FullLikelihood(model, data, names + ("amplitude_220", "amplitude_221", "phase_220", "phase_221"))(
        np.column_stack([theta, amplitudes, phases])
    )
    assert np.all(np.isneginf(marginal[-2:])) and np.all(np.isneginf(full[-2:]))
    fixed_marginal = jax.jit(
        lambda d, *x: marginal_log_likelihood(*projections(model, d, *x), d.log_l0, prior)
    )
    selected = set()
    for row, value, full_value, amps, phis in zip(theta[:-2], marginal, full, amplitudes, phases):
        mass, spin, incl, psi, shift = row
        # the independent path: cut each detector's segment at its shifted start, analyse it as fixed
        cut = [extract_segment(strain[d], STARTS[d] + shift, N * DT) for d in DETECTORS]
        selected.add(tuple(round(segment.t0 * RATE) for segment, _ in cut))
        fixed = build_analysis_data(
            np.stack([t for _, t in cut]), np.stack([s.data for s, _ in cut]), acfs, ANTENNA, DETECTORS
        )
        assert value == pytest.approx(float(fixed_marginal(fixed, mass, spin, incl, psi)), abs=1e-8)
        freqs, taus = (np.asarray(x) for x in frequency_damping_time(model.modes, mass, spin))
        reference = sum(
            reference_log_likelihood(
                segment.data,
                acfs[i],
                reference_template(
                    since,
                    freqs,
                    taus,
                    amps * AMPLITUDE_UNIT,
                    phis,
                    _rotated(ANTENNA, psi)[i],
                    ms=[2, 2],
                    inclination=incl,
                ),
            )
            for i, (segment, since) in enumerate(cut)
        )
        assert full_value == pytest.approx(reference, abs=1e-7)
    assert len(selected) >= 5  # the shifts reached several different segments


def test_noise_evidence_of_a_window_is_the_average_of_the_segments_noise_likelihoods(window_setup):
    strain, acfs = window_setup
    _, times, stretch = cut_segments(strain, STARTS, N * DT, WINDOW)
    data = build_analysis_data(times, stretch, acfs, ANTENNA, DETECTORS, start_window=WINDOW)
    # brute force: mean of L0 of the segments cut at 20000 starts across the window
    shifts = WINDOW[0] + (np.arange(20000) + 0.5) * (WINDOW[1] - WINDOW[0]) / 20000
    total = np.zeros_like(shifts)
    for i, det in enumerate(DETECTORS):
        first = np.array([strain[det].index_at_or_after(STARTS[det] + s) for s in shifts])
        noise_only = {
            k: reference_log_likelihood(strain[det].data[k : k + N], acfs[i], np.zeros(N))
            for k in np.unique(first)
        }
        total += np.array([noise_only[k] for k in first])
    expected = np.log(np.mean(np.exp(total - total.max()))) + total.max()
    assert log_noise_evidence(data) == pytest.approx(expected, abs=2e-3)
    assert log_noise_evidence(data) != pytest.approx(float(data.log_l0), abs=0.1)  # the window matters


def test_an_injected_polarization_and_inclination_are_recovered():
    """A 220 injection built independently (bilby's antenna patterns at the true psi, closed-form
    -2Y_2m inclination factors) in three detectors, analysed with the patterns at psi = 0: the
    zero-noise marginal likelihood on a grid flat in (cos iota, psi) peaks at the truth."""
    from gwtools.ringdown import detectors

    ra, dec, gps = 1.95, -1.27, 1126259462.4
    names = ("H1", "L1", "V1")
    cos_true, psi_true = 0.2, 13 * np.pi / 64
    acfs = np.stack(
        [
            damped_cosine_acf(128, RATE, 1.0e-21, 3e-3, 150.0),
            damped_cosine_acf(128, RATE, 1.0e-21, 2e-3, 90.0),
            damped_cosine_acf(128, RATE, 1.0e-21, 1e-3, 250.0),
        ]
    )
    times = np.arange(128) * DT + np.array([[0.0], [0.4 * DT], [0.8 * DT]])
    freqs, taus = (np.asarray(x) for x in frequency_damping_time(parse_modes(["220"]), 68.0, 0.69))
    data = np.stack(
        [
            reference_template(
                times[i],
                freqs,
                taus,
                [40e-21],
                [1.1],
                detectors.antenna_pattern(d, ra, dec, psi_true, gps),
                ms=[2],
                inclination=np.arccos(cos_true),
            )
            for i, d in enumerate(names)
        ]
    )
    antenna = np.array([detectors.antenna_pattern(d, ra, dec, 0.0, gps) for d in names])
    likelihood = FireflyLikelihood(
        RingdownModel(parse_modes(["220"])),
        build_analysis_data(times, data, acfs, antenna),
        ("inclination", "polarization"),
        fixed={"final_mass": 68.0, "final_spin": 0.69},
        prior=QuadraturePrior("flat", amplitude_max=500.0),
    )
    cos_grid, psi_grid = np.linspace(-1, 1, 41), np.arange(64) * np.pi / 64
    c, p = np.meshgrid(cos_grid, psi_grid, indexing="ij")
    values = likelihood(np.column_stack([np.arccos(c.ravel()), p.ravel()])).reshape(c.shape)
    best = np.argwhere(values >= values.max() - 1e-9)
    # psi + pi/2 flips the template's sign, which the marginalized phase absorbs: two equal maxima
    assert sorted(map(tuple, best)) == [(24, 13), (24, 45)] and cos_grid[24] == pytest.approx(cos_true)
    # the truth lies in the 90% region of the grid posterior (flat prior), which is a small part of the prior
    posterior = np.exp(values - values.max()).ravel()
    ranked = np.sort(posterior)[::-1]
    inside_90 = posterior >= ranked[np.searchsorted(np.cumsum(ranked) / ranked.sum(), 0.9)]
    assert inside_90.reshape(c.shape)[24, 13] and inside_90.mean() < 0.25


MAIN_JOB = Path(__file__).resolve().parents[1] / "pipelines" / "gw150914.toml"


def test_sampled_angles_and_start_have_the_documented_priors_end_to_end():
    import bilby
    import scipy.stats

    from gwtools.ringdown.config import load_config, override
    from gwtools.ringdown.pipeline import parameter_space
    from gwtools.ringdown.results import bilby_priors

    config = override(
        load_config(MAIN_JOB),
        {
            "prior": {"psi": [0.3, 0.3 + np.pi], "cos_inclination": [-1.0, 0.5]},
            "analysis": {"start_window_ms": [-1.0, 2.0]},
        },
    )
    space, fixed = parameter_space(config)
    assert space.names == ("final_mass", "final_spin", "inclination", "polarization", "start_shift")
    assert fixed == {}
    by_name = {p.name: p for p in space.priors}
    assert by_name["polarization"].periodic and not by_name["inclination"].periodic
    assert (by_name["start_shift"].lower, by_name["start_shift"].upper) == (-1e-3, 2e-3)
    u = np.random.default_rng(2).uniform(size=(5000, space.ndim))
    draws = space(u)
    uniform = scipy.stats.uniform
    assert scipy.stats.kstest(draws[:, 3], uniform(0.3, np.pi).cdf).pvalue > 0.01  # flat psi on its period
    assert scipy.stats.kstest(np.cos(draws[:, 2]), uniform(-1.0, 1.5).cdf).pvalue > 0.01  # flat in cos iota
    assert scipy.stats.kstest(draws[:, 4], uniform(-1e-3, 3e-3).cdf).pvalue > 0.01
    # the bilby export: Sine for the inclination (flat in its cosine), periodic Uniform for psi
    priors = bilby_priors(
        {p.name: (p.lower, p.upper) for p in space.priors},
        {p.name: p.kind for p in space.priors},
        tuple(p.name for p in space.priors if p.periodic),
    )
    assert type(priors["inclination"]) is bilby.core.prior.Sine
    assert (
        type(priors["polarization"]) is bilby.core.prior.Uniform
        and priors["polarization"].boundary == "periodic"
    )
    assert priors["start_shift"].boundary is None
    exported = priors["inclination"].sample(5000)
    assert scipy.stats.kstest(np.cos(exported), uniform(-1.0, 1.5).cdf).pvalue > 0.01
    # same shape as our density (bilby's Sine.prob is normalized on [0, pi] even when truncated)
    grid = np.linspace(1.1, 3.0, 7)
    difference = priors["inclination"].ln_prob(grid) - by_name["inclination"].log_density(grid)
    assert np.ptp(difference) < 1e-12
    np.testing.assert_allclose(
        priors["inclination"].cdf(grid), (0.5 - np.cos(grid)) / 1.5
    )  # flat in cos on [-1, 0.5]
    # a range shorter than the period is not wrapped
    short, _ = parameter_space(override(config, {"prior": {"psi": [0.0, 1.0]}}))
    assert not {p.name: p for p in short.priors}["polarization"].periodic


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("prior", "psi", [0.0, 6.3], r"\[prior\] psi: \[0.0, 6.3\] is 6.3 rad long, more than the period pi"),
        ("prior", "psi", [1.0, 0.5], r"\[prior\] psi: lower bound 1.0 >= upper bound 0.5"),
        (
            "analysis",
            "start_window_ms",
            [0.5, 2.0],
            r"\[analysis\] start_window_ms: \[0.5, 2.0\] ms does not contain",
        ),
        ("analysis", "start_window_ms", 1.0, r"\[analysis\] start_window_ms: expected \[lower, upper\]"),
    ],
)
def test_bad_sky_and_window_settings_are_clear_errors(section, key, value, message):
    from gwtools.ringdown.config import load_config, override

    with pytest.raises(ValueError, match=message):
        override(load_config(MAIN_JOB), {section: {key: value}})


def test_windows_beyond_the_data_and_psi_with_free_polarizations_are_refused(tmp_path):
    from gwtools.ringdown.config import load_config, override
    from gwtools.ringdown.input_checks import check_inputs

    base = override(load_config(MAIN_JOB), {"output": {"directory": str(tmp_path)}})
    # a range within 1e-4 rad of pi is the period typed with few digits: sampled as exactly [0, pi]
    assert override(base, {"prior": {"psi": [0.0, 3.1416]}}).prior.psi == (0.0, np.pi)
    with pytest.raises(ValueError, match="'free' polarization model absorbs psi"):
        override(base, {"prior": {"psi": [0.0, 1.0]}, "model": {"polarization": "free"}})
    # the strain files end 16.58 s after the H1 peak: a window reaching past that is refused up front
    late = override(base, {"analysis": {"start_offset_ms": 16200.0, "start_window_ms": [-1.0, 300.0]}})
    with pytest.raises(
        ValueError,
        match=r"\[analysis\] start_window_ms: the H1 segment GPS .* is not inside the "
        r"H1 data.*choose a start time and window within the data",
    ):
        check_inputs(late)
    check_inputs(override(late, {"analysis": {"start_window_ms": [-1.0, 100.0]}}))
    # the off-source window may not overlap any segment the window reaches
    with pytest.raises(ValueError, match=r"\[noise\] offsource: window \[-14.0, -1.0\] s overlaps"):
        override(base, {"analysis": {"start_window_ms": [-990.0, 0.0]}})


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["blackjax", "dynesty"])
def test_both_engines_sample_the_angles_and_the_start_of_an_injection(engine):
    """A loud 220 injection (network SNR ~ 30) starting 0.35 ms after the configured start, the
    mass, spin, inclination (flat in cos), psi (periodic) and start shift all sampled."""
    from gwtools.ringdown import detectors
    from gwtools.ringdown.sampling import ParameterSpace, PriorRange, SamplerSettings, run_nested

    ra, dec, gps = 1.95, -1.27, 1126259462.4
    truth = {
        "final_mass": 68.0,
        "final_spin": 0.69,
        "inclination": np.arccos(0.2),
        "polarization": 0.64,
        "start_shift": 0.35e-3,
    }
    sky = np.array([detectors.antenna_pattern(d, ra, dec, truth["polarization"], gps) for d in DETECTORS])
    strain, acfs = _strain(
        4,
        ("220",),
        truth["final_mass"],
        truth["final_spin"],
        [30.0],
        [1.1],
        sky,
        truth["inclination"],
        delay=truth["start_shift"],
    )
    window = (-1e-3, 1e-3)
    _, times, stretch = cut_segments(strain, STARTS, N * DT, window)
    antenna = np.array([detectors.antenna_pattern(d, ra, dec, 0.0, gps) for d in DETECTORS])
    data = build_analysis_data(times, stretch, acfs, antenna, DETECTORS, start_window=window)
    space = ParameterSpace(
        (
            PriorRange("final_mass", 40.0, 110.0),
            PriorRange("final_spin", 0.0, 0.99),
            PriorRange("inclination", 0.0, np.pi, kind="sine"),
            PriorRange("polarization", 0.0, np.pi, periodic=True),
            PriorRange("start_shift", *window),
        )
    )
    likelihood = FireflyLikelihood(
        RingdownModel(parse_modes(["220"])),
        data,
        space.names,
        prior=QuadraturePrior("flat", amplitude_max=200.0),
    )
    extra = {"sample": "rwalk", "queue_size": 1} if engine == "dynesty" else {}
    samples = run_nested(
        likelihood,
        space,
        SamplerSettings(engine=engine, nlive=50, dlogz=1.0, seed=3, **extra),
        progress=False,
    ).samples
    posterior = dict(zip(space.names, samples.T))
    for name in ("final_mass", "final_spin", "inclination"):
        lo, hi = np.percentile(posterior[name], [2.5, 97.5])
        assert lo < truth[name] < hi, name
    # psi is measured modulo pi/2 (the amplitudes' phase absorbs a sign): most samples near the truth
    # (0.38 of them would be for a flat posterior)
    offset = np.mod(posterior["polarization"] - truth["polarization"] + np.pi / 4, np.pi / 2) - np.pi / 4
    assert np.mean(np.abs(offset) < 0.3) > 0.6
    assert np.all((posterior["polarization"] >= 0) & (posterior["polarization"] < np.pi))
    # a ringdown only bounds its start from below: no segment starting a sample before the signal
    assert np.all((posterior["start_shift"] >= window[0]) & (posterior["start_shift"] <= window[1]))
    assert np.mean(posterior["start_shift"] < truth["start_shift"] - DT) < 0.05
