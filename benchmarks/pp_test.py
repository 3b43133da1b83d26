"""P-P test of the default nested sampler on FIREFLY: are credible intervals calibrated?

Injections are drawn from the analysis prior itself: remnant mass and spin uniform on the prior
box, 220 quadratures from the Gaussian quadrature prior N(0, scale^2) (whose marginalization is
exact, so the analysis prior is the injection prior), face-off, in noise drawn from the real H1
GW150914 autocovariance (data/GW150914, pyRing's 4096 s estimate) in H1 and L1.  All
injections are analysed in one vmapped, compiled run (:func:`gwtools.ringdown.validation.pp_test`).  For calibrated
posteriors the credible level of the true value, P(x < x_true | data), is uniform over
injections: the script prints the Kolmogorov-Smirnov p-value per parameter and draws the P-P
plot.

Run:  python benchmarks/pp_test.py [--injections 200] [--nlive 200] [--plot pp.png]
Prints one JSON line.  ``tests/test_pp.py`` runs the same test small (100 injections, nlive 100).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import scipy.stats

from gwtools.io.atomic import atomic_path
from gwtools.ringdown.noise import read_acf
from gwtools.ringdown.priors import ParameterSpace, PriorRange
from gwtools.ringdown.sampling import SamplerSettings
from gwtools.ringdown.validation import PPSetup, pp_test

ROOT = Path(__file__).resolve().parents[1]
ACF_FILE = ROOT / "data" / "GW150914" / "ACF_H1_1126257415_4096_4.0_2048.0.txt.gz"
SPACE = ParameterSpace((PriorRange("final_mass", 35.0, 140.0), PriorRange("final_spin", 0.0, 0.99)))
#: GW150914's sky position, polarization and geocentre start; face-off.
SETUP = PPSetup(ra=1.95, dec=-1.27, gps=1126259462.4083, polarization=0.82, inclination=np.pi)


def run(n_injections: int, nlive: int, seed: int, setup: PPSetup = SETUP, engine: str = "blackjax"):
    """(levels, p-values, results, seconds) of a P-P run."""
    acf = read_acf(ACF_FILE, setup.sample_rate, round(setup.duration * setup.sample_rate))
    settings = SamplerSettings(engine=engine, nlive=nlive, dlogz=0.1, seed=seed)
    outcome = pp_test(SPACE, acf, setup, n_injections, settings)
    return outcome.levels, outcome.pvalues, outcome.results, outcome.seconds


def plot(levels, pvalues, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = levels.shape[0]
    grid = np.linspace(0, 1, 201)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    band = scipy.stats.binom.interval(0.9, n, grid)
    ax.fill_between(grid, band[0] / n, band[1] / n, color="0.85", label="90% band (uniform)")
    for j, name in enumerate(SPACE.names):
        ax.plot(grid, [np.mean(levels[:, j] <= g) for g in grid], label=f"{name} (KS p = {pvalues[name]:.2f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("credible level")
    ax.set_ylabel("fraction of injections")
    ax.set_title(f"P-P, {n} injections")
    ax.legend(loc="upper left", fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--injections", type=int, default=200)
    parser.add_argument("--nlive", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engine", default="blackjax", choices=("blackjax", "dynesty"))
    parser.add_argument("--plot", help="P-P plot PNG (default: pp_test.png in a temporary directory)")
    args = parser.parse_args(argv)
    levels, pvalues, results, seconds = run(args.injections, args.nlive, args.seed, engine=args.engine)
    path = plot(levels, pvalues, Path(args.plot or Path(tempfile.mkdtemp(prefix="pp_test_")) / "pp_test.png"))
    record = {"benchmark": "pp_test", "engine": args.engine, "injections": args.injections, "nlive": args.nlive,
              "ks_pvalues": pvalues, "seconds": seconds, "ncall": int(sum(r.ncall for r in results)),
              "plot": str(path)}
    print(json.dumps(record), flush=True)
    return record


if __name__ == "__main__":
    main()
