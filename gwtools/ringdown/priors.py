"""Priors of the sampled parameters and the map from the unit cube onto them.

Both samplers work in the unit cube u in [0, 1]^ndim and map it onto the physical parameters
with :meth:`ParameterSpace.transform`.  The transforms are written once for numpy and JAX
arrays alike (the array's own namespace is used), so dynesty calls them on numpy rows and the
compiled blackjax sampler calls them inside its jitted likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PRIOR_KINDS", "ParameterSpace", "PriorRange"]

#: Prior shapes of sampled parameters: flat, or proportional to sin(x) (flat in cos x).
PRIOR_KINDS = ("uniform", "sine")


def _namespace(x):
    """numpy for numpy arrays and scalars, jax.numpy otherwise (JAX arrays and tracers).

    JAX is imported only when a JAX array comes in, so the configuration code stays light.
    """
    if isinstance(x, (np.ndarray, np.generic, float, int)):
        return np
    import gwtools.ringdown.precision  # noqa: F401  (float64 before JAX makes any array)
    # isort: split
    import jax.numpy as jnp

    return jnp


@dataclass(frozen=True)
class PriorRange:
    """One-dimensional prior of a sampled parameter.

    ``uniform``: flat on [lower, upper].  ``sine``: density proportional to sin(x) on
    [lower, upper] within [0, pi] (isotropic inclination: flat in cos x).  ``periodic``: the
    sampler wraps the parameter around its range (phases), so no posterior mode is split at
    the boundary.
    """

    name: str
    lower: float
    upper: float
    kind: str = "uniform"
    periodic: bool = False

    def __post_init__(self) -> None:
        if self.kind not in PRIOR_KINDS:
            raise ValueError(f"prior of {self.name}: unknown kind {self.kind!r}; choose one of {PRIOR_KINDS}")
        if not (np.isfinite(self.lower) and np.isfinite(self.upper) and self.lower < self.upper):
            raise ValueError(
                f"prior of {self.name}: need finite lower < upper, got [{self.lower}, {self.upper}]"
            )
        if self.kind == "sine" and not (self.lower >= 0.0 and self.upper <= np.pi):
            raise ValueError(f"prior of {self.name}: a sine prior must lie within [0, pi]")
        if self.kind == "sine" and self.periodic:
            raise ValueError(f"prior of {self.name}: a sine prior cannot be periodic")

    def transform(self, u):
        """Map u ~ U(0, 1) (numpy or JAX array) to the prior."""
        xp = _namespace(u)
        if self.kind == "uniform":
            return self.lower + u * (self.upper - self.lower)
        c_lo, c_hi = np.cos(self.lower), np.cos(self.upper)
        return xp.arccos(c_lo - u * (c_lo - c_hi))

    def log_density(self, x):
        x = np.asarray(x, dtype=float)
        inside = (x >= self.lower) & (x <= self.upper)
        if self.kind == "uniform":
            value = -np.log(self.upper - self.lower) * np.ones_like(x)
        else:
            with np.errstate(divide="ignore"):
                value = np.log(np.sin(x) / (np.cos(self.lower) - np.cos(self.upper)))
        return np.where(inside, value, -np.inf)


@dataclass(frozen=True)
class ParameterSpace:
    """Ordered sampled parameters and their priors (the order is stored, never implied)."""

    priors: tuple[PriorRange, ...]

    def __post_init__(self) -> None:
        names = [p.name for p in self.priors]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate sampled parameters: {names}")
        if not names:
            raise ValueError("at least one parameter must be sampled")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.priors)

    @property
    def ndim(self) -> int:
        return len(self.priors)

    @property
    def periodic_indices(self) -> list[int] | None:
        indices = [i for i, p in enumerate(self.priors) if p.periodic]
        return indices or None

    @property
    def periodic_mask(self) -> np.ndarray:
        """(ndim,) bool: which unit-cube coordinates wrap around."""
        return np.array([p.periodic for p in self.priors])

    def transform(self, u):
        """Physical parameters (..., ndim) from unit-cube coordinates (..., ndim), numpy or JAX."""
        xp = _namespace(u)
        return xp.stack([p.transform(u[..., i]) for i, p in enumerate(self.priors)], axis=-1)

    def __call__(self, u) -> np.ndarray:
        """Prior transform from the unit cube (dynesty's ``prior_transform``)."""
        return self.transform(np.asarray(u, dtype=float))

    def wrap(self, u):
        """Unit-cube coordinates with the periodic ones taken modulo 1 (numpy or JAX)."""
        xp = _namespace(u)
        return xp.where(self.periodic_mask, xp.mod(u, 1.0), u)

    def in_unit_cube(self, u):
        """Whether the non-periodic coordinates of ``u`` (..., ndim) lie in [0, 1]."""
        xp = _namespace(u)
        inside = ((u >= 0.0) & (u <= 1.0)) | self.periodic_mask
        return xp.all(inside, axis=-1)

    def log_prior(self, x) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        return sum(p.log_density(x[:, i]) for i, p in enumerate(self.priors))
