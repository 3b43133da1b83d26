"""Bijections from each parameter's physical support to the real line.

A density model is fitted in unbounded coordinates ``y = T(x)``; the density of the original
parameters then follows from the change of variables

    ln p_x(x) = ln p_y(T(x)) + ln |dT/dx|,

so every transform carries its log-Jacobian.  Four kinds cover the parameters of compact-binary
posteriors (bilby names):

* ``identity``: unbounded parameters (and names this module does not know),
* ``log``: ``y = ln(x - lower)`` for parameters bounded below only (masses, distances),
* ``logit``: ``y = ln(x - lower) - ln(upper - x)`` for parameters on ``(lower, upper)``
  (spin magnitudes, mass ratio, tilts, cosines),
* ``angle``: periodic parameters (``ra``, ``psi``, phases), whose interval ``[lower, upper)`` is
  a circle.  The circle is cut at ``cut`` and the logit is applied to the distance from the
  cut, ``u = (x - cut) mod (upper - lower)``.  :func:`default_transform` puts the cut in the
  widest empty arc of the samples, so a posterior that straddles ``ra = 0`` (common for sky
  rings) stays one connected region instead of two tails at plus and minus infinity.

Only numpy and scipy are used, so that compressed posteriors can be regenerated without torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

__all__ = [
    "ParameterTransform",
    "TransformStack",
    "default_transform",
    "physical_support",
    "widest_gap_centre",
]

KINDS = ("identity", "log", "logit", "angle")

# Relative amount by which a logit bound is moved outwards when the samples touch it (e.g. a
# mass ratio of exactly 1): the open interval must contain every sample for the map to be finite.
BOUNDARY_PAD = 1e-6

_TWO_PI = 2.0 * math.pi
_POSITIVE = (
    "mass_1", "mass_2", "total_mass", "chirp_mass",
    "mass_1_source", "mass_2_source", "total_mass_source", "chirp_mass_source",
    "final_mass", "final_mass_source", "luminosity_distance", "comoving_distance", "redshift",
)
_INTERVALS: dict[str, tuple[float, float]] = {
    "mass_ratio": (0.0, 1.0),
    "symmetric_mass_ratio": (0.0, 0.25),
    "a_1": (0.0, 1.0),
    "a_2": (0.0, 1.0),
    "chi_p": (0.0, 1.0),
    "final_spin": (0.0, 1.0),
    "chi_eff": (-1.0, 1.0),
    "chi_1": (-1.0, 1.0),
    "chi_2": (-1.0, 1.0),
    "cos_tilt_1": (-1.0, 1.0),
    "cos_tilt_2": (-1.0, 1.0),
    "cos_theta_jn": (-1.0, 1.0),
    "cos_iota": (-1.0, 1.0),
    "sin_dec": (-1.0, 1.0),
    "tilt_1": (0.0, math.pi),
    "tilt_2": (0.0, math.pi),
    "theta_jn": (0.0, math.pi),
    "iota": (0.0, math.pi),
    "psi": (0.0, math.pi),
    "dec": (-0.5 * math.pi, 0.5 * math.pi),
    "ra": (0.0, _TWO_PI),
    "phase": (0.0, _TWO_PI),
    "phi_1": (0.0, _TWO_PI),
    "phi_2": (0.0, _TWO_PI),
    "phi_12": (0.0, _TWO_PI),
    "phi_jl": (0.0, _TWO_PI),
}


#: Periodic parameters: the ends of their interval are the same point.
_PERIODIC = frozenset({"ra", "psi", "phase", "phi_1", "phi_2", "phi_12", "phi_jl"})


def physical_support(name: str) -> tuple[str, float | None, float | None]:
    """Transform kind and physical bounds of a bilby-named parameter.

    Parameters
    ----------
    name : str
        bilby parameter name, e.g. ``"chirp_mass"`` or ``"tilt_1"``.

    Returns
    -------
    kind, lower, upper : (str, float or None, float or None)
        ``("log", 0.0, None)`` for masses, distances and redshift; ``("angle", lower, upper)``
        for periodic angles; ``("logit", lower, upper)`` for other bounded parameters (angles in
        radians); ``("identity", None, None)`` for names without a known support.
    """
    if name in _POSITIVE:
        return "log", 0.0, None
    if name in _INTERVALS:
        lower, upper = _INTERVALS[name]
        return ("angle" if name in _PERIODIC else "logit"), lower, upper
    return "identity", None, None


@dataclass(frozen=True)
class ParameterTransform:
    """A bijection from one parameter's support to the real line.

    Parameters
    ----------
    name : str
        Parameter name the transform belongs to (bilby naming).
    kind : {"identity", "log", "logit", "angle"}
        ``log`` maps ``(lower, inf)`` and ``logit`` maps ``(lower, upper)`` onto the real line;
        ``angle`` maps the circle ``[lower, upper)`` without the point ``cut``.
    lower, upper : float or None
        Bounds, in the parameter's units: ``log`` needs ``lower`` only, ``logit`` and
        ``angle`` both, ``identity`` neither.
    cut : float or None
        ``angle`` only: where the circle is cut, in ``[lower, upper)`` (default ``lower``,
        which makes it the logit of the interval).
    """

    name: str
    kind: str
    lower: float | None = None
    upper: float | None = None
    cut: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"transform kind {self.kind!r} for {self.name!r} is unknown; use one of {KINDS}"
            )
        needs = {"identity": (False, False), "log": (True, False), "logit": (True, True),
                 "angle": (True, True)}[self.kind]
        for bound, needed, label in ((self.lower, needs[0], "lower"), (self.upper, needs[1], "upper")):
            if needed and (bound is None or not math.isfinite(bound)):
                raise ValueError(
                    f"{self.kind} transform of {self.name!r} needs a finite {label} bound, got {bound!r}"
                )
            if not needed and bound is not None:
                raise ValueError(
                    f"{self.kind} transform of {self.name!r} takes no {label} bound, got {bound!r}"
                )
        if self.kind in ("logit", "angle") and not self.lower < self.upper:
            raise ValueError(
                f"{self.kind} transform of {self.name!r} needs lower < upper, got "
                f"({self.lower}, {self.upper})"
            )
        if self.kind != "angle" and self.cut is not None:
            raise ValueError(f"{self.kind} transform of {self.name!r} takes no cut, got {self.cut!r}")
        if self.kind == "angle":
            cut = self.lower if self.cut is None else float(self.cut)
            if not self.lower <= cut < self.upper:
                raise ValueError(
                    f"angle transform of {self.name!r} needs its cut in [{self.lower}, "
                    f"{self.upper}), got {cut!r}"
                )
            object.__setattr__(self, "cut", cut)

    @property
    def period(self) -> float:
        """``upper - lower`` of an ``angle`` transform."""
        return self.upper - self.lower

    def _arc(self, x: np.ndarray) -> np.ndarray:
        """Distance ``u`` in ``[0, period)`` from the cut, going up, of angles ``x``."""
        return np.mod(x - self.cut, self.period)

    def contains(self, x: np.ndarray) -> np.ndarray:
        """Boolean mask of the values inside the closed support ``[lower, upper]``."""
        x = np.asarray(x, dtype=float)
        inside = np.isfinite(x)
        if self.lower is not None:
            inside &= x >= self.lower
        if self.upper is not None:
            inside &= x <= self.upper
        return inside

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if self.kind != "identity":
            bad = ~self.contains(x)
            if np.any(bad):
                raise ValueError(
                    f"{int(bad.sum())} value(s) of {self.name!r} lie outside its support "
                    f"[{self.lower}, {self.upper}] (e.g. {x[bad].flat[0]!r}); check the units or "
                    "mask points with TransformStack.in_support before transforming"
                )
        return x

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Map physical values ``x`` (any shape) to the real line; values on a bound map to +-inf.

        Raises
        ------
        ValueError
            If any value lies outside the closed support or is not finite.
        """
        x = self._check(x)
        if self.kind == "identity":
            return x.copy()
        with np.errstate(divide="ignore"):
            if self.kind == "log":
                return np.log(x - self.lower)
            if self.kind == "angle":
                u = self._arc(x)
                return np.log(u) - np.log(self.period - u)
            # Two logs rather than log(u / (1 - u)): keeps precision near both bounds.
            return np.log(x - self.lower) - np.log(self.upper - x)

    def inverse(self, y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Map real values ``y`` (any shape) back into the open support ``(lower, upper)``.

        For ``|y|`` beyond ~37 (logit) or below ~-745 (log) float64 rounds the result onto a
        bound; it is nudged to the nearest float inside, so that :meth:`forward` of any
        regenerated sample stays finite.  ``out`` (float64, ``y``'s shape) receives the
        result; every step works in place there, so regenerating samples allocates nothing.
        """
        y = np.asarray(y, dtype=float)
        x = np.empty_like(y) if out is None else out
        if self.kind == "identity":
            x[...] = y
            return x
        inner_lower = np.nextafter(self.lower, np.inf)
        if self.kind == "log":
            np.exp(y, out=x)
            x += self.lower
            return np.maximum(x, inner_lower, out=x)
        expit(y, out=x)
        if self.kind == "angle":
            # Keep a few ulps of the interval's scale away from the cut, both sides.
            margin = 4.0 * np.spacing(max(abs(self.lower), abs(self.upper)))
            x *= self.period
            np.clip(x, margin, self.period - margin, out=x)
            x += self.cut
            return np.subtract(x, self.period, out=x, where=x >= self.upper)
        x *= self.upper - self.lower
        x += self.lower
        return np.clip(x, inner_lower, np.nextafter(self.upper, -np.inf), out=x)

    def log_abs_det_jacobian(self, x: np.ndarray) -> np.ndarray:
        """``ln |dy/dx|`` at physical values ``x`` (same shape as ``x``).

        ``log``: ``-ln(x - lower)``; ``logit``: ``ln(upper - lower) - ln(x - lower) - ln(upper - x)``;
        ``angle``: the logit's, with ``u = (x - cut) mod period`` in place of ``x - lower``.
        """
        x = self._check(x)
        if self.kind == "identity":
            return np.zeros_like(x)
        with np.errstate(divide="ignore"):
            if self.kind == "log":
                return -np.log(x - self.lower)
            if self.kind == "angle":
                u = self._arc(x)
                return math.log(self.period) - np.log(u) - np.log(self.period - u)
            return math.log(self.upper - self.lower) - np.log(x - self.lower) - np.log(self.upper - x)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description; :meth:`from_dict` rebuilds the transform exactly."""
        out = {"name": self.name, "kind": self.kind, "lower": self.lower, "upper": self.upper}
        if self.kind == "angle":
            out["cut"] = self.cut
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParameterTransform:
        """Rebuild a transform from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        unknown = set(d) - {"name", "kind", "lower", "upper", "cut"}
        if unknown:
            raise ValueError(
                f"unknown transform keys {sorted(unknown)}; expected name, kind, lower, upper, cut"
            )
        if "name" not in d or "kind" not in d:
            raise ValueError(f"transform description needs 'name' and 'kind', got keys {sorted(d)}")
        lower = None if d.get("lower") is None else float(d["lower"])
        upper = None if d.get("upper") is None else float(d["upper"])
        cut = None if d.get("cut") is None else float(d["cut"])
        return cls(name=str(d["name"]), kind=str(d["kind"]), lower=lower, upper=upper, cut=cut)


def default_transform(
    name: str,
    samples: np.ndarray | None = None,
    bounds: tuple[float | None, float | None] | None = None,
    support_samples: np.ndarray | None = None,
) -> ParameterTransform:
    """The transform of a bilby-named parameter onto the real line, from its physical support.

    Masses, distances and redshift get ``log`` (lower bound 0); bounded parameters get ``logit``
    on their physical bounds (see :func:`physical_support`); periodic angles get ``angle``, cut
    in the middle of the widest arc free of samples; unknown names get ``identity``,
    on purpose: a logit on the observed sample range would give zero density to valid values just
    outside it.  Unknown unbounded parameters (e.g. ``geocent_time``) are therefore left for the
    density model to standardise.

    Parameters
    ----------
    name : str
        bilby parameter name.
    samples : ndarray, shape (n,), optional
        Posterior samples of the parameter.  If given they are checked against the support, and a
        logit bound that a sample touches exactly (e.g. ``mass_ratio == 1``) is moved outwards by
        ``BOUNDARY_PAD`` times the interval width, so that every sample maps to a finite value.
    bounds : (lower, upper), optional
        Replace the physical bounds, e.g. by the analysis prior's tighter ones (``a_1`` in
        ``(0, 0.99)`` for the 2-OGC runs): a posterior piled up against a prior edge is much
        easier to model when the logit puts that edge at infinity.  ``(lower, None)`` gives a
        ``log`` transform, ``(None, None)`` the identity; bounds on a periodic angle make it an
        interval (``logit``).
    support_samples : ndarray, shape (m,), optional
        Further values the transform must map to finite numbers (e.g. prior draws, which the
        same transform will carry), checked and used for the logit padding like ``samples``;
        they do not move the cut of a periodic angle, which follows the posterior alone
        (prior draws usually fill the whole circle).

    Raises
    ------
    ValueError
        If a sample lies outside the physical support or is not finite.
    """
    kind, lower, upper = physical_support(name)
    if bounds is not None:
        lower, upper = bounds
        kind = "identity" if lower is None and upper is None else "log" if upper is None else "logit"
        if lower is None and upper is not None:
            raise ValueError(f"bounds for {name!r} with an upper but no lower bound are not supported")
    transform = ParameterTransform(name, kind, lower, upper)
    if samples is None:
        return transform
    samples = transform._check(np.asarray(samples, dtype=float))
    if samples.size == 0:
        raise ValueError(f"no samples given for {name!r}")
    if support_samples is not None:
        support_samples = transform._check(np.asarray(support_samples, dtype=float))
    if kind == "angle":
        return ParameterTransform(name, kind, lower, upper, cut=widest_gap_centre(samples, lower, upper))
    if support_samples is not None:
        samples = np.concatenate([samples, support_samples])
    if kind == "log" and samples.min() <= lower:
        raise ValueError(f"{name!r} must be > {lower}, found {samples.min()!r}")
    if kind == "logit":
        pad = BOUNDARY_PAD * (upper - lower)
        if samples.min() <= lower:
            lower -= pad
        if samples.max() >= upper:
            upper += pad
        transform = ParameterTransform(name, kind, lower, upper)
    return transform


def widest_gap_centre(samples: np.ndarray, lower: float, upper: float) -> float:
    """Middle of the widest arc without samples on the circle ``[lower, upper)``.

    Parameters
    ----------
    samples : ndarray, shape (n,)
        Angles in ``[lower, upper]`` (``upper`` is the same point as ``lower``).

    Returns
    -------
    float
        A point in ``[lower, upper)``.
    """
    period = upper - lower
    angles = np.sort(np.mod(np.asarray(samples, dtype=float) - lower, period))
    # Gaps between neighbours, the last one wrapping around through the ends.
    gaps = np.diff(angles, append=angles[0] + period)
    widest = int(np.argmax(gaps))
    return float(lower + np.mod(angles[widest] + 0.5 * gaps[widest], period))


@dataclass(frozen=True)
class TransformStack:
    """Independent transforms of the columns of a ``(n, d)`` sample array.

    Parameters
    ----------
    transforms : tuple of ParameterTransform
        One per column, in column order.
    """

    transforms: tuple[ParameterTransform, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "transforms", tuple(self.transforms))
        names = self.names
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate parameter names in transform stack: {names}")

    @classmethod
    def default(
        cls,
        names: Sequence[str],
        samples: np.ndarray | None = None,
        bounds: dict[str, tuple[float | None, float | None]] | None = None,
        support_samples: np.ndarray | None = None,
    ) -> TransformStack:
        """Stack of :func:`default_transform` for ``names``.

        ``samples`` (posterior) and ``support_samples`` (e.g. prior draws) have shapes
        ``(n, len(names))`` and ``(m, len(names))``; ``bounds`` maps names to bound overrides.
        """
        bounds = {} if bounds is None else dict(bounds)
        unknown = sorted(set(bounds) - set(names))
        if unknown:
            raise ValueError(f"bounds given for {unknown}, which are not among the parameters {list(names)}")
        if samples is None:
            return cls(tuple(default_transform(name, None, bounds.get(name)) for name in names))
        samples = np.asarray(samples, dtype=float)
        extra = None if support_samples is None else np.asarray(support_samples, dtype=float)
        for label, array in (("samples", samples), ("support_samples", extra)):
            if array is not None and (array.ndim != 2 or array.shape[1] != len(names)):
                raise ValueError(f"{label} must have shape (n, {len(names)}), got {array.shape}")
        return cls(tuple(
            default_transform(name, samples[:, i], bounds.get(name),
                              None if extra is None else extra[:, i])
            for i, name in enumerate(names)
        ))

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names, in column order."""
        return tuple(t.name for t in self.transforms)

    def _columns(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != len(self.transforms):
            raise ValueError(
                f"expected an array of shape (n, {len(self.transforms)}) with columns {self.names}, "
                f"got shape {x.shape}"
            )
        return x

    def in_support(self, x: np.ndarray) -> np.ndarray:
        """Boolean mask, shape ``(n,)``, of rows whose every value lies in its support."""
        x = self._columns(x)
        mask = np.ones(x.shape[0], dtype=bool)
        for i, t in enumerate(self.transforms):
            mask &= t.contains(x[:, i])
        return mask

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Physical ``(n, d)`` array to unbounded ``(n, d)`` array."""
        x = self._columns(x)
        return np.stack([t.forward(x[:, i]) for i, t in enumerate(self.transforms)], axis=1)

    def inverse(self, y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Unbounded ``(n, d)`` array back to physical ``(n, d)`` array.

        ``out`` (n, d), which may be ``y`` itself, receives the result; by default a new
        Fortran-ordered array does, whose columns are contiguous like those of the samplers'
        output.
        """
        y = self._columns(y)
        x = np.empty(y.shape, order="F") if out is None else out
        for i, t in enumerate(self.transforms):
            t.inverse(y[:, i], out=x[:, i])
        return x

    def log_abs_det_jacobian(self, x: np.ndarray) -> np.ndarray:
        """``ln |det dy/dx|``, shape ``(n,)``: add it to ``ln p_y(y)`` to get ``ln p_x(x)``."""
        x = self._columns(x)
        total = np.zeros(x.shape[0])
        for i, t in enumerate(self.transforms):
            total += t.log_abs_det_jacobian(x[:, i])
        return total

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description, one entry per column in order."""
        return {"transforms": [t.to_dict() for t in self.transforms]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransformStack:
        """Rebuild a stack from :meth:`to_dict` output."""
        if set(d) != {"transforms"}:
            raise ValueError(f"transform stack description needs exactly the key 'transforms', got {sorted(d)}")
        return cls(tuple(ParameterTransform.from_dict(t) for t in d["transforms"]))
