"""Simple density baselines that a compressed posterior must beat at equal size.

Both are fitted in the unbounded coordinates of a :class:`TransformStack` and return densities
in the physical parameters with the Jacobian included:

* a full-covariance Gaussian mixture (scikit-learn's EM fit; evaluated and sampled here with
  numpy), stored as ``K (1 + d + d (d + 1) / 2)`` float32 numbers,
* a Gaussian kernel density estimate (scipy, Scott's rule by default), which stores every
  training point: a reference for fidelity, not for size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import logsumexp

from gwtools.compression.transforms import TransformStack

__all__ = [
    "GaussianMixtureDensity",
    "KernelDensity",
    "fit_gaussian_kde",
    "fit_gaussian_mixture",
]

FLOAT32_BYTES = 4
CHUNK = 16384


def _physical_log_prob(transforms: TransformStack, log_prob_transformed, x: np.ndarray) -> np.ndarray:
    """``ln p_x(x) = ln p_y(T(x)) + ln|dT/dx|``, ``-inf`` for rows outside the support."""
    x = np.asarray(x, dtype=float)
    out = np.full(x.shape[0], -np.inf)
    inside = transforms.in_support(x)
    if inside.any():
        xi = x[inside]
        out[inside] = log_prob_transformed(transforms.forward(xi)) + transforms.log_abs_det_jacobian(xi)
    return out


def _training_array(x: np.ndarray, names: Sequence[str]) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"samples must have shape (n, {len(names)}) for parameters {list(names)}, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("samples contain NaN or infinite values")
    return x


@dataclass(frozen=True)
class GaussianMixtureDensity:
    """Full-covariance Gaussian mixture in transformed coordinates.

    Parameters
    ----------
    transforms : TransformStack
        Maps the physical parameters (in its order) to the mixture's coordinates.
    weights : ndarray, shape (K,)
    means : ndarray, shape (K, d)
    covariances : ndarray, shape (K, d, d)
    """

    transforms: TransformStack
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    @property
    def parameters(self) -> tuple[str, ...]:
        """Parameter names, in column order."""
        return self.transforms.names

    @property
    def n_components(self) -> int:
        """Number of mixture components ``K``."""
        return len(self.weights)

    @property
    def n_bytes(self) -> int:
        """Storage size as float32: weights, means and the triangle of each covariance."""
        k, d = self.means.shape
        return FLOAT32_BYTES * k * (1 + d + d * (d + 1) // 2)

    def log_prob_transformed(self, y: np.ndarray) -> np.ndarray:
        """Log density (nats) in transformed coordinates, shape ``(n,)`` for ``y`` of shape ``(n, d)``."""
        y = np.asarray(y, dtype=float)
        d = self.means.shape[1]
        chol = np.linalg.cholesky(self.covariances)                      # (K, d, d)
        log_det = np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
        log_norm = np.log(self.weights) - log_det - 0.5 * d * math.log(2 * math.pi)
        out = np.empty(len(y))
        # chunks keep the (K, d, chunk) work array small for millions of points
        for start in range(0, len(y), CHUNK):
            diff = y[None, start:start + CHUNK, :] - self.means[:, None, :]      # (K, m, d)
            whitened = np.linalg.solve(chol, np.swapaxes(diff, 1, 2))           # (K, d, m)
            log_comp = -0.5 * np.sum(whitened**2, axis=1) + log_norm[:, None]
            out[start:start + CHUNK] = logsumexp(log_comp, axis=0)
        return out

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """Log density (nats) in the physical parameters, Jacobian included; ``-inf`` off support."""
        return _physical_log_prob(self.transforms, self.log_prob_transformed, x)

    def sample(self, n: int, *, seed: int) -> np.ndarray:
        """``n`` physical samples, shape ``(n, d)``; same seed, same samples."""
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n, self.weights / self.weights.sum())
        chol = np.linalg.cholesky(self.covariances)
        parts = [self.means[k] + rng.standard_normal((c, self.means.shape[1])) @ chol[k].T
                 for k, c in enumerate(counts)]
        y = np.concatenate(parts)[rng.permutation(n)]
        return self.transforms.inverse(y)


def fit_gaussian_mixture(
    x: np.ndarray,
    names: Sequence[str],
    n_components: int,
    *,
    seed: int = 0,
    transforms: TransformStack | None = None,
    n_init: int = 1,
) -> GaussianMixtureDensity:
    """Fit a full-covariance Gaussian mixture to physical samples in transformed coordinates.

    Parameters
    ----------
    x : ndarray, shape (n, d)
        Training samples, columns in the order of ``names``.
    names : sequence of str
        bilby parameter names.
    n_components : int
        Number of mixture components.
    seed : int
        Seed of the k-means initialisation.
    transforms : TransformStack, optional
        Defaults to ``TransformStack.default(names, x)``.
    n_init : int
        Number of EM restarts; the best likelihood is kept.
    """
    from sklearn.mixture import GaussianMixture

    x = _training_array(x, names)
    if n_components < 1 or n_components > len(x):
        raise ValueError(f"n_components must be in [1, {len(x)}], got {n_components}")
    transforms = TransformStack.default(names, x) if transforms is None else transforms
    gmm = GaussianMixture(n_components=n_components, covariance_type="full", random_state=seed,
                          n_init=n_init, max_iter=500)
    gmm.fit(transforms.forward(x))
    return GaussianMixtureDensity(transforms, gmm.weights_.copy(), gmm.means_.copy(), gmm.covariances_.copy())


@dataclass(frozen=True)
class KernelDensity:
    """Gaussian KDE (scipy) in transformed coordinates.

    Parameters
    ----------
    transforms : TransformStack
    kde : scipy.stats.gaussian_kde
        Fitted on transformed training samples.
    """

    transforms: TransformStack
    kde: stats.gaussian_kde

    @property
    def parameters(self) -> tuple[str, ...]:
        """Parameter names, in column order."""
        return self.transforms.names

    @property
    def n_bytes(self) -> int:
        """Storage size as float32: every training point plus the kernel covariance triangle."""
        d, n = self.kde.dataset.shape
        return FLOAT32_BYTES * (n * d + d * (d + 1) // 2)

    def log_prob_transformed(self, y: np.ndarray) -> np.ndarray:
        """Log density (nats) in transformed coordinates, shape ``(n,)``."""
        return self.kde.logpdf(np.asarray(y, dtype=float).T)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """Log density (nats) in the physical parameters, Jacobian included; ``-inf`` off support."""
        return _physical_log_prob(self.transforms, self.log_prob_transformed, x)

    def sample(self, n: int, *, seed: int) -> np.ndarray:
        """``n`` physical samples, shape ``(n, d)``."""
        return self.transforms.inverse(self.kde.resample(n, seed=np.random.default_rng(seed)).T)


def fit_gaussian_kde(
    x: np.ndarray,
    names: Sequence[str],
    *,
    transforms: TransformStack | None = None,
    bw_method: str | float | None = None,
) -> KernelDensity:
    """Gaussian KDE of physical samples in transformed coordinates (``bw_method`` as in scipy)."""
    x = _training_array(x, names)
    transforms = TransformStack.default(names, x) if transforms is None else transforms
    return KernelDensity(transforms, stats.gaussian_kde(transforms.forward(x).T, bw_method=bw_method))
