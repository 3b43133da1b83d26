"""Kerr QNM table against the ``qnm`` package, published values and JAX transformations."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import qnm

from gwtools.ringdown import qnm_table
from gwtools.ringdown.constants import CHI_MAX, MTSUN_S
from gwtools.ringdown.modes import TABLE_PATH, Mode, parse_modes, tabulated_modes
from gwtools.ringdown.qnm import (
    frequency_damping_time,
    kerr_omega,
)

REQUIRED_MODES = parse_modes("220 221 222 330 440 210 320 200 201 331 430 550 211")

# Spins off the table's nodes (the first-kind Chebyshev nodes never hit chi = 0 or CHI_MAX).
TEST_SPINS = (0.0, 0.5, 0.9, CHI_MAX) + tuple(np.random.default_rng(7).uniform(0.0, CHI_MAX, 6))


def qnm_omega(mode: Mode, spins) -> np.ndarray:
    """Reference ``M omega`` of the prograde (l, |m|, n) mode: qnm's own spin sequence (built
    with qnm's default settings, not the table generator's) polished by Leaver's method."""
    sequence = qnm.modes_cache(s=-2, l=mode.l, m=abs(mode.m), n=mode.n)
    return np.array([sequence(float(chi))[0] for chi in spins])


def relative_errors(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Largest relative errors in frequency (Re omega) and damping time (-1 / Im omega)."""
    return (
        float(np.max(np.abs(ours.real / reference.real - 1.0))),
        float(np.max(np.abs(reference.imag / ours.imag - 1.0))),
    )


def test_required_modes_are_tabulated():
    assert set(REQUIRED_MODES) <= set(tabulated_modes())


@pytest.mark.parametrize("mode", tabulated_modes(), ids=str)
def test_table_matches_qnm_off_nodes(mode):
    reference = qnm_omega(mode, TEST_SPINS)
    ours = np.asarray(kerr_omega(mode, jnp.array(TEST_SPINS)))
    error_f, error_tau = relative_errors(ours, reference)
    assert error_f <= 1e-4 and error_tau <= 1e-4, (error_f, error_tau)
    # Much better in practice: the accuracy the package states (1e-8); a looser check would
    # hide a degraded table.
    assert max(error_f, error_tau) <= qnm_table.MAX_RELATIVE_ERROR, (error_f, error_tau)


def test_the_stated_qnm_accuracy_is_one_number():
    from pathlib import Path

    from gwtools.ringdown import qnm as qnm_module

    assert qnm_table.MAX_RELATIVE_ERROR == 1e-8
    assert qnm_table.TableSettings().max_relative_error == qnm_table.MAX_RELATIVE_ERROR
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert readme.count("≤1e-8") == 2
    assert "below 1e-8" in qnm_module.__doc__


@pytest.mark.parametrize("mode", [Mode(2, 2, 0), Mode(3, 3, 1)], ids=str)
def test_negative_m_is_mirror_of_prograde(mode):
    mirror = Mode(mode.l, -mode.m, mode.n)
    reference = -np.conj(qnm_omega(mode, TEST_SPINS[:4]))
    ours = np.asarray(kerr_omega(mirror, jnp.array(TEST_SPINS[:4])))
    assert np.all(ours.real < 0.0) and np.all(ours.imag < 0.0)
    np.testing.assert_allclose(ours, reference, rtol=1e-7)


def test_prograde_frequency_grows_with_spin():
    spins = jnp.linspace(0.0, CHI_MAX, 50)
    for mode in parse_modes("220 330 440 550"):
        omega_re = np.asarray(kerr_omega(mode, spins).real)
        assert np.all(np.diff(omega_re) > 0.0)
        # Extremal limit of prograde modes: Re(M omega) -> m / 2 (Detweiler 1980).
        assert mode.m / 2 * 0.8 < omega_re[-1] < mode.m / 2


def test_schwarzschild_220_published_value():
    # Leaver 1985; Berti, Cardoso & Will 2006, Table for l = 2, n = 0: 0.37367 - 0.08896 i.
    omega = complex(kerr_omega("220", 0.0))
    assert abs(omega.real - 0.37367) < 1e-5
    assert abs(omega.imag + 0.08896) < 1e-5


@pytest.mark.parametrize("family", ["220 210 200", "221 211 201", "330 320", "440 430"])
def test_schwarzschild_is_degenerate_in_m(family):
    # Without spin the frequency cannot depend on m (the modes were fitted independently).
    values = [complex(kerr_omega(mode, 0.0)) for mode in parse_modes(family)]
    np.testing.assert_allclose(values, values[0], rtol=1e-8)


def test_berti_fit_220():
    # Berti, Cardoso & Will 2006 fits (Table VIII): accurate to a few per cent.
    spins = np.array([0.1, 0.4, 0.69, 0.9, 0.98])
    f_fit = (1.5251 - 1.1568 * (1.0 - spins) ** 0.1292) / (2.0 * np.pi)
    quality_fit = 0.7000 + 1.4187 * (1.0 - spins) ** -0.4990
    omega = np.asarray(kerr_omega("220", jnp.array(spins)))
    np.testing.assert_allclose(omega.real / (2.0 * np.pi), f_fit, rtol=0.02)
    np.testing.assert_allclose(omega.real / (-2.0 * omega.imag), quality_fit, rtol=0.03)


def test_mtsun_matches_lal_constant():
    # LAL's LAL_MTSUN_SI.
    assert pytest.approx(4.925490947641267e-06, rel=1e-12) == MTSUN_S


def test_gw150914_like_remnant_units():
    final_mass, final_spin = 68.0, 0.69
    f_hz, tau_s = frequency_damping_time("220", final_mass, final_spin)
    assert f_hz.shape == (1,) and tau_s.shape == (1,)
    assert 245.0 < float(f_hz[0]) < 255.0
    assert 3.8e-3 < float(tau_s[0]) < 4.4e-3
    # Units by hand, with qnm's omega and the LAL solar-mass time.
    omega = qnm_omega(Mode(2, 2, 0), [final_spin])[0]
    mass_s = final_mass * 4.925490947641267e-06
    assert float(f_hz[0]) == pytest.approx(omega.real / (2.0 * math.pi * mass_s), rel=1e-8)
    assert float(tau_s[0]) == pytest.approx(-mass_s / omega.imag, rel=1e-8)


def test_broadcasting_shapes_and_mode_order():
    modes = parse_modes("220,221,330")
    final_mass = jnp.array([[50.0], [60.0], [70.0]])
    final_spin = jnp.array([0.1, 0.5, 0.7, 0.9])
    f_hz, tau_s = frequency_damping_time(modes, final_mass, final_spin)
    assert f_hz.shape == tau_s.shape == (3, 4, 3)
    for k, mode in enumerate(modes):
        f_single, tau_single = frequency_damping_time((mode,), final_mass, final_spin)
        np.testing.assert_allclose(f_hz[..., k], f_single[..., 0], rtol=1e-13)
        np.testing.assert_allclose(tau_s[..., k], tau_single[..., 0], rtol=1e-13)
    assert kerr_omega("220", jnp.zeros((2, 5))).shape == (2, 5)
    assert frequency_damping_time("220", 60.0, 0.5)[0].shape == (1,)


def test_jit_and_vmap_agree_with_eager():
    modes = parse_modes("220,221")
    final_mass = jnp.array([40.0, 65.0, 90.0])
    final_spin = jnp.array([0.05, 0.6, 0.95])
    eager = frequency_damping_time(modes, final_mass, final_spin)
    jitted = jax.jit(frequency_damping_time, static_argnums=0)(modes, final_mass, final_spin)
    mapped = jax.vmap(lambda m, c: frequency_damping_time(modes, m, c))(final_mass, final_spin)
    for a, b, c in zip(eager, jitted, mapped):
        np.testing.assert_allclose(a, b, rtol=1e-13)
        np.testing.assert_allclose(a, c, rtol=1e-13)


def test_gradients():
    final_mass, final_spin = 68.0, 0.69

    def f_220(mass, spin):
        return frequency_damping_time("220", mass, spin)[0][0]

    def tau_220(mass, spin):
        return frequency_damping_time("220", mass, spin)[1][0]

    df_dmass, df_dspin = jax.grad(f_220, argnums=(0, 1))(final_mass, final_spin)
    dtau_dmass, dtau_dspin = jax.grad(tau_220, argnums=(0, 1))(final_mass, final_spin)
    # f ~ 1/M and tau ~ M at fixed spin.
    assert float(df_dmass) == pytest.approx(-float(f_220(final_mass, final_spin)) / final_mass)
    assert float(dtau_dmass) == pytest.approx(float(tau_220(final_mass, final_spin)) / final_mass)
    # Spin derivatives against central differences of qnm's solutions.
    step = 1e-4
    lower, upper = qnm_omega(Mode(2, 2, 0), [final_spin - step, final_spin + step])
    mass_s = final_mass * MTSUN_S
    df_fd = (upper.real - lower.real) / (2.0 * step) / (2.0 * math.pi * mass_s)
    dtau_fd = (-mass_s / upper.imag + mass_s / lower.imag) / (2.0 * step)
    assert float(df_dspin) == pytest.approx(df_fd, rel=1e-4)
    assert float(dtau_dspin) == pytest.approx(dtau_fd, rel=1e-4)
    # Spin derivative stays finite at both ends of the range.
    for spin in (0.0, CHI_MAX):
        assert np.isfinite(float(jax.grad(f_220, argnums=1)(final_mass, spin)))


def test_out_of_range_gives_nan_without_poisoning_gradients():
    final_spin = jnp.array([-0.01, 0.3, CHI_MAX + 1e-3, 0.8])
    final_mass = jnp.array([60.0, 60.0, 60.0, -5.0])
    f_hz, tau_s = frequency_damping_time("220", final_mass, final_spin)
    np.testing.assert_array_equal(np.isnan(f_hz[:, 0]), [True, False, True, True])
    np.testing.assert_array_equal(np.isnan(tau_s[:, 0]), [True, False, True, True])
    assert np.all(np.isnan(np.asarray(kerr_omega("330", jnp.array([-0.5, 1.0])))))
    grad = jax.grad(lambda c: jnp.nansum(kerr_omega("220", c).real))(final_spin)
    assert np.isfinite(float(grad[1])) and float(grad[1]) > 0.0


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("220", Mode(2, 2, 0)),
        ("2,2,1", Mode(2, 2, 1)),
        (" (2, -2, 1) ", Mode(2, -2, 1)),
        ("2,-2,0", Mode(2, -2, 0)),
        ("l2m2n1", Mode(2, 2, 1)),
        ("l3m-3n0", Mode(3, -3, 0)),
        ((2, 2, 1), Mode(2, 2, 1)),
        ([4, 4, 0], Mode(4, 4, 0)),
        (np.array([3, 3, 0]), Mode(3, 3, 0)),
        (Mode(5, 5, 0), Mode(5, 5, 0)),
    ],
)
def test_mode_parse(spec, expected):
    assert Mode.parse(spec) == expected


@pytest.mark.parametrize(
    "spec",
    ["", "22", "2200", "230", "1,1,0", "2,3,0", "2,2,-1", "l2m2", "abc", "2.0,2,0", (2, 2), 220,
     (2.0, 2, 0), (True, 2, 0)],
)
def test_mode_parse_rejects(spec):
    with pytest.raises(ValueError):
        Mode.parse(spec)


def test_mode_string_round_trip_and_order():
    modes = [Mode(2, 2, 0), Mode(2, -2, 0), Mode(3, 3, 1), Mode(10, -10, 12), Mode(12, 2, 0)]
    assert [str(mode) for mode in modes] == ["220", "2,-2,0", "331", "10,-10,12", "12,2,0"]
    assert all(Mode.parse(str(mode)) == mode for mode in modes)
    assert sorted([Mode(3, 3, 0), Mode(2, 2, 1), Mode(2, 2, 0)]) == [
        Mode(2, 2, 0), Mode(2, 2, 1), Mode(3, 3, 0)
    ]
    with pytest.raises(AttributeError):
        Mode(2, 2, 0).l = 3


def test_parse_modes():
    assert parse_modes("220,221") == (Mode(2, 2, 0), Mode(2, 2, 1))
    assert parse_modes("330 220") == (Mode(3, 3, 0), Mode(2, 2, 0))
    assert parse_modes("2,2,0; 2,-2,0") == (Mode(2, 2, 0), Mode(2, -2, 0))
    assert parse_modes(["220", (2, 2, 1), Mode(3, 3, 0)]) == parse_modes("220,221,330")
    assert parse_modes(Mode(2, 2, 0)) == (Mode(2, 2, 0),)
    for bad, message in [
        ("220,221,220", "more than once"),
        (["2,2,0", (2, 2, 0)], "more than once"),
        ("2,2,1", "ambiguous"),
        ("", "no modes"),
        ([], "no modes"),
        ((2, 2, 0), "cannot parse"),
        (None, "string or a list"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_modes(bad)


def test_untabulated_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="not in the QNM table"):
        kerr_omega("660", 0.5)
    with pytest.raises(ValueError, match="not in the QNM table"):
        frequency_damping_time("220,224", 60.0, 0.5)


def test_shipped_table_provenance():
    with np.load(TABLE_PATH) as table:
        assert table["qnm_version"].item() == qnm.__version__
        assert float(table["chi_max"]) == CHI_MAX
        assert table["coefficients"].dtype == np.complex128
        assert np.all(table["max_relative_error_frequency"] <= qnm_table.MAX_RELATIVE_ERROR)
        assert np.all(table["max_relative_error_damping_time"] <= qnm_table.MAX_RELATIVE_ERROR)
        assert "n_nodes" in table["settings"].item()
    assert TABLE_PATH.stat().st_size < 50_000


def test_generator_round_trip(tmp_path):
    settings = qnm_table.TableSettings(n_nodes=48, n_validation=10)
    table = qnm_table.build_table(parse_modes("330"), settings)
    path = qnm_table.write_table(table, tmp_path / "table.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.npz"]
    with np.load(path) as loaded:
        np.testing.assert_array_equal(loaded["coefficients"], table["coefficients"])
        np.testing.assert_array_equal(loaded["modes"], [[3, 3, 0]])
        assert int(loaded["format_version"]) == 1
    # The series built here reproduces qnm at off-node spins.
    x = qnm_table.chebyshev_variable_to_spin(np.array([0.123, -0.777]))
    series = np.polynomial.chebyshev.chebval(
        np.array([0.123, -0.777]), table["coefficients"][0, : int(table["n_terms"][0])]
    )
    np.testing.assert_allclose(series, qnm_omega(Mode(3, 3, 0), x), rtol=1e-8)
    with pytest.raises(ValueError, match="m >= 0"):
        qnm_table.build_table([Mode(2, -2, 0)], settings)


def test_chebyshev_variable_inverse():
    from gwtools.ringdown.qnm import spin_to_chebyshev_variable

    spins = np.linspace(0.0, CHI_MAX, 11)
    x = spin_to_chebyshev_variable(spins)
    assert x[0] == pytest.approx(1.0) and x[-1] == pytest.approx(-1.0)
    np.testing.assert_allclose(qnm_table.chebyshev_variable_to_spin(x), spins, atol=1e-14)


@pytest.fixture
def swapped_table(monkeypatch):
    """Point the loader at another file; the cached shipped table is restored afterwards."""
    from gwtools.ringdown import modes

    def swap(path):
        monkeypatch.setattr(modes, "TABLE_PATH", path)
        modes.read_table.cache_clear()

    yield swap
    monkeypatch.undo()
    modes.read_table.cache_clear()


def test_missing_or_foreign_table_is_a_clear_error(tmp_path, swapped_table):
    swapped_table(tmp_path / "absent.npz")
    with pytest.raises(FileNotFoundError, match="qnm_table"):
        kerr_omega("220", 0.5)
    with np.load(TABLE_PATH) as shipped:
        contents = dict(shipped)
    contents["format_version"] = np.array(99)
    swapped_table(qnm_table.write_table(contents, tmp_path / "future.npz"))
    with pytest.raises(ValueError, match="format version 99"):
        kerr_omega("220", 0.5)
