"""End-to-end validation on injections with known answers (CI-sized; the large version is
benchmarks/firefly_vs_full.py).

* Maximum likelihood: a 220 injection into noise drawn from the real GW150914 H1 ACF is
  recovered at the injected mass and spin.
* FIREFLY (amplitudes marginalized, then importance-resampled to the flat-in-amplitude prior)
  and the full-parameter baseline (amplitudes and phases sampled) agree on a 220 + 221 injection:
  1-D Jensen-Shannon divergences of Mf, chi, A220, A221 below 0.1 bit (nlive 500: about 2500
  posterior samples each, JSD noise floor ~0.01 bit with 40 bins) and ln Z within the larger of
  their combined uncertainty and 0.3.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import gw150914_like  # the injection of benchmarks/firefly_vs_full.py

from gwtools.ringdown.firefly import FireflyLikelihood, QuadraturePrior
from gwtools.ringdown.sampling import ParameterSpace, PriorRange, SamplerSettings
from gwtools.ringdown.validation import compare_firefly_with_full

SPACE = ParameterSpace((PriorRange("final_mass", 35.0, 140.0), PriorRange("final_spin", 0.0, 0.99)))


def test_maximum_likelihood_recovers_injected_remnant():
    model, data, injection, snr = gw150914_like(["220"], duration=0.1)
    assert snr > 8
    like = FireflyLikelihood(model, data, SPACE.names,
                             {"inclination": injection.inclination, "polarization": injection.polarization},
                             QuadraturePrior(amplitude_max=20.0))
    masses, spins = np.meshgrid(np.linspace(50, 90, 81), np.linspace(0.3, 0.9, 61), indexing="ij")
    values = like(np.column_stack([masses.ravel(), spins.ravel()])).reshape(masses.shape)
    i, j = np.unravel_index(np.argmax(values), values.shape)
    # the Mf-chi degeneracy of a single mode runs along constant f_220; the peak stays close
    assert abs(masses[i, j] - injection.final_mass) < 6.0
    assert abs(spins[i, j] - injection.final_spin) < 0.1
    # and far from the truth the likelihood is much lower
    truth = like(np.array([[injection.final_mass, injection.final_spin]]))[0]
    assert truth > values.max() - 5.0
    assert like(np.array([[90.0, 0.3]]))[0] < truth - 20.0


@pytest.mark.slow
def test_firefly_agrees_with_full_parameter_sampling():
    model, data, injection, snr = gw150914_like(["220", "221"], duration=0.1)
    fixed = {"inclination": injection.inclination, "polarization": injection.polarization}
    result = compare_firefly_with_full(model, data, SPACE, fixed, 20.0,
                                       SamplerSettings(nlive=500, dlogz=0.1, seed=4))
    for name in ("final_mass", "final_spin", "amplitude_220", "amplitude_221"):
        assert result.jsd_bits[name] < 0.1, (name, result.jsd_bits)
    combined = np.hypot(result.firefly_log_evidence_err, result.full_log_evidence_err)
    assert abs(result.firefly_log_evidence - result.full_log_evidence) < max(combined, 0.3)
    # FIREFLY explores 2 dimensions instead of 6
    assert result.firefly_calls * 3 < result.full_calls
