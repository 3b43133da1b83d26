"""The ringdown likelihood in its direct form: whitening matrices, O(n^2) per basis waveform.

With T_i = L_i L_i^T (Cholesky) and the whitening matrix W_i = L_i^-1, the quadrature form of
:mod:`gwtools.ringdown.likelihood` reads S = sum_i (W_i G_i)(W_i d_i) and
M = sum_i (W_i G_i)(W_i G_i)^T: every basis waveform is whitened by one n x n product.  This is
how the likelihood was evaluated before the O(n K) Levinson form; it is kept as the reference
the tests and ``benchmarks/likelihood.py`` compare with, and for the whitened waveforms of the
plots.  :class:`DirectAnalysisData` holds n x n matrices per detector, so it is not meant for
sampling long segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import gwtools.ringdown.precision  # noqa: F401  (float64 before JAX makes any array)

# isort: split
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from gwtools.ringdown.likelihood import SegmentData, check_analysis_inputs, rotate_antenna
from gwtools.ringdown.model import AMPLITUDE_UNIT, RingdownModel, mixing_matrix, mode_waveforms_uniform
from gwtools.ringdown.noise import cholesky_factor, toeplitz_covariance

__all__ = [
    "DirectAnalysisData",
    "build_direct_analysis_data",
    "log_likelihood_direct",
    "projections_direct",
]


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True)
class DirectAnalysisData(SegmentData):
    """Whitened analysis data.

    Attributes
    ----------
    times
        (n_det, n) seconds since the analysis start in each detector.
    whitening
        (n_det, n, n) W_i = L_i^-1 for the covariance in units of AMPLITUDE_UNIT^2.
    whitened_data
        (n_det, n) W_i d_i with d in units of AMPLITUDE_UNIT.
    antenna
        (n_det, 2) antenna patterns (F_plus, F_cross) at polarization angle psi = 0.
    log_l0
        ln L at zero signal, in strain units.
    detectors
        Detector names, in the order of the arrays (static).
    """

    times: jax.Array
    whitening: jax.Array
    whitened_data: jax.Array
    antenna: jax.Array
    log_l0: jax.Array
    detectors: tuple[str, ...] = ()


def build_direct_analysis_data(times, data, acfs, antenna, detectors=()) -> DirectAnalysisData:
    """Whitening matrices and whitened data; arguments and errors as
    :func:`gwtools.ringdown.likelihood.build_analysis_data`."""
    times, data, acfs, antenna, detectors = check_analysis_inputs(times, data, acfs, antenna, detectors)
    n_det, n = data.shape
    whitening = np.empty((n_det, n, n))
    whitened = np.empty((n_det, n))
    log_l0 = 0.0
    eye = np.eye(n)
    for i, det in enumerate(detectors):
        chol = cholesky_factor(toeplitz_covariance(acfs[i] / AMPLITUDE_UNIT**2), detector=det)
        whitening[i] = scipy.linalg.solve_triangular(chol, eye, lower=True)
        whitened[i] = whitening[i] @ (data[i] / AMPLITUDE_UNIT)
        log_det_cov = 2.0 * np.sum(np.log(np.diag(chol))) + 2.0 * n * np.log(AMPLITUDE_UNIT)
        log_l0 += -0.5 * whitened[i] @ whitened[i] - 0.5 * log_det_cov - 0.5 * n * np.log(2 * np.pi)
    return DirectAnalysisData(
        times=jnp.asarray(times),
        whitening=jnp.asarray(whitening),
        whitened_data=jnp.asarray(whitened),
        antenna=jnp.asarray(antenna),
        log_l0=jnp.asarray(log_l0),
        detectors=detectors,
    )


def _mode_waveforms(model: RingdownModel, data: DirectAnalysisData, final_mass, final_spin):
    """Mode waveforms (n_det, 2 n_modes, n) on the data's (uniform) time grids."""
    delta_t = data.times[0, 1] - data.times[0, 0]
    return mode_waveforms_uniform(model, final_mass, final_spin, data.times[:, 0], delta_t, data.n_samples)


def projections_direct(model: RingdownModel, data: DirectAnalysisData, final_mass, final_spin,
                       inclination=0.0, polarization=0.0):
    """S and M as :func:`gwtools.ringdown.likelihood.projections`, by whitening the mode waveforms.

    The whitened damped cosines and sines of the modes are mixed into the detector basis of the
    quadratures by the dense real :func:`~gwtools.ringdown.model.mixing_matrix`: S = sum_i
    mixing_i (W_i g) . (W_i d_i), M = sum_i mixing_i (W_i g)(W_i g)^T mixing_i^T.
    """
    white = jnp.einsum("dkn,dmn->dkm", _mode_waveforms(model, data, final_mass, final_spin), data.whitening)
    mixing = mixing_matrix(model, rotate_antenna(data.antenna, polarization), inclination)
    basis = jnp.einsum("dqk,dkm->dqm", mixing, white)
    return jnp.einsum("dqm,dm->q", basis, data.whitened_data), jnp.einsum("dqm,dpm->qp", basis, basis)


def log_likelihood_direct(model: RingdownModel, data: DirectAnalysisData, quadratures, final_mass,
                          final_spin, inclination=0.0, polarization=0.0):
    """ln L(theta, B) as :func:`gwtools.ringdown.likelihood.log_likelihood`, by whitening the template:
    ln L = ln L0 + sum_i [(W_i h_i).(W_i d_i) - 1/2 |W_i h_i|^2]."""
    waveforms = _mode_waveforms(model, data, final_mass, final_spin)
    mixing = mixing_matrix(model, rotate_antenna(data.antenna, polarization), inclination)
    coefficients = jnp.einsum("q,dqk->dk", jnp.asarray(quadratures), mixing)
    template = jnp.einsum("dk,dkn->dn", coefficients, waveforms)
    white = jnp.einsum("dmn,dn->dm", data.whitening, template)
    return data.log_l0 + jnp.sum(white * data.whitened_data) - 0.5 * jnp.sum(white * white)
