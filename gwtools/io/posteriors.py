"""Readers for compact-binary posterior sample files, returning one table in bilby names.

Supported layouts (detected from the file's extension and contents):

* PyCBC posterior HDF5 (``samples/`` group of 1-D datasets, optional ``prior_samples/`` and
  ``likelihood_stats/``), e.g. the 2-OGC release (Nitz et al. 2019, arXiv:1910.05331) and the
  O2 PyCBC Inference release ``gwastro/o2-bbh-pe`` (De et al. 2019, arXiv:1811.09232),
* GWTC-1 release HDF5 (structured datasets ``Overall_posterior``, ``<approximant>_posterior``,
  ``prior``; LVC, arXiv:1811.12907),
* GWTC-2.1 / GWTC-3 ``PEDataRelease`` HDF5 written by PESummary (``<label>/posterior_samples``,
  several labels per file; arXiv:2108.01045, arXiv:2111.03606),
* bilby result files, JSON and HDF5 (Ashton et al. 2019, arXiv:1811.02042),
* plain tables: CSV / whitespace text with a header row, ``.npy`` structured arrays and ``.npz``
  archives of 1-D arrays.

Columns are renamed to bilby names, missing standard parameters are derived (chirp mass, mass
ratio, source/detector-frame masses, cosines of angles, ``chi_eff``, ``chi_p``) and every column
with a known physical support is checked.  Source-frame conversion uses the file's redshift when
it has one, else the redshift of the luminosity distance in astropy's Planck15 cosmology (the one
used by GWTC-1 and 2-OGC); ``metadata["redshift_source"]`` says which.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gwtools.compression.transforms import physical_support
from gwtools.io.checksums import file_sha256

__all__ = [
    "PosteriorTable",
    "available_analyses",
    "read_posterior",
]

logger = logging.getLogger(__name__)

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
TEXT_SUFFIXES = (".csv", ".dat", ".txt")
NUMPY_SUFFIXES = (".npy", ".npz")

# PyCBC and GWTC-1 column names -> bilby names.  ``mass1``/``mass2`` are handled apart because
# their frame depends on the file (see ``_pycbc_mass_frame``).
ALIASES = {
    "srcmass1": "mass_1_source",
    "srcmass2": "mass_2_source",
    "mchirp": "chirp_mass",
    "spin1_a": "a_1",
    "spin2_a": "a_2",
    "spin1_polar": "tilt_1",
    "spin2_polar": "tilt_2",
    "spin1_azimuthal": "phi_1",
    "spin2_azimuthal": "phi_2",
    "distance": "luminosity_distance",
    "inclination": "iota",
    "tc": "geocent_time",
    "loglikelihood": "log_likelihood",
    "logprior": "log_prior",
    "loglr": "log_likelihood_ratio",
    # GWTC-1 release names
    "m1_detector_frame_Msun": "mass_1",
    "m2_detector_frame_Msun": "mass_2",
    "luminosity_distance_Mpc": "luminosity_distance",
    "costheta_jn": "cos_theta_jn",
    "right_ascension": "ra",
    "declination": "dec",
    "spin1": "a_1",
    "spin2": "a_2",
    "costilt1": "cos_tilt_1",
    "costilt2": "cos_tilt_2",
    "lambda1": "lambda_1",
    "lambda2": "lambda_2",
}

PREFERRED_LABELS = ("mixed", "publicationsamples")


@dataclass(frozen=True)
class PosteriorTable:
    """Posterior samples in bilby names, with provenance.

    Parameters
    ----------
    samples : dict of str to ndarray, shape (n,)
        One float64 array per parameter (masses in solar masses, distances in Mpc, angles in
        radians).
    parameters : tuple of str
        Parameter order (the dict's order is never relied on).
    metadata : dict
        JSON-serialisable provenance: ``source_path``, ``format``, ``analysis``, ``sha256``,
        ``event``, ``n_samples``, how derived quantities were obtained, ...
    prior_samples : dict of str to ndarray, or None
        Draws from the analysis prior, with the same derived columns, when the file carries them.
    """

    samples: dict[str, np.ndarray]
    parameters: tuple[str, ...]
    metadata: dict
    prior_samples: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", tuple(self.parameters))
        missing = [p for p in self.parameters if p not in self.samples]
        if missing:
            raise ValueError(f"parameters {missing} have no samples")
        lengths = {len(self.samples[p]) for p in self.parameters}
        if len(lengths) > 1:
            raise ValueError(f"sample columns have different lengths: {sorted(lengths)}")

    @property
    def n_samples(self) -> int:
        """Number of posterior samples."""
        return len(self.samples[self.parameters[0]]) if self.parameters else 0

    def array(self, params: Sequence[str] | None = None) -> np.ndarray:
        """Samples as an ``(n, len(params))`` float64 array, columns in the order of ``params``.

        Raises
        ------
        KeyError
            If a name is not in the table; the message lists the available names.
        """
        return _stack(self.samples, self.parameters if params is None else params, "posterior")

    def prior_array(self, params: Sequence[str] | None = None) -> np.ndarray:
        """Prior draws as an ``(m, len(params))`` array (see :meth:`array`).

        Raises
        ------
        ValueError
            If the file carried no prior samples.
        """
        if self.prior_samples is None:
            raise ValueError(f"{self.metadata.get('source_path')} carries no prior samples")
        return _stack(self.prior_samples, self.parameters if params is None else params, "prior")


def _stack(columns: dict[str, np.ndarray], params: Sequence[str], what: str) -> np.ndarray:
    if isinstance(params, str):
        params = [params]
    missing = [p for p in params if p not in columns]
    if missing:
        raise KeyError(f"{what} samples have no {missing}; available: {sorted(columns)}")
    return np.column_stack([np.asarray(columns[p], dtype=float) for p in params])


# --------------------------------------------------------------------------- format detection


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"posterior file {path} does not exist")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file; give the path of one posterior file")
    return path


def _hdf5_layout(f: h5py.File, path: Path) -> str:
    keys = list(f.keys())
    if isinstance(f.get("samples"), h5py.Group):
        return "pycbc"
    if any(isinstance(f[k], h5py.Dataset) and f[k].dtype.names and k.endswith("_posterior") for k in keys):
        return "gwtc1"
    if "posterior" in keys and ("version" in keys or "label" in keys or "meta_data" in keys):
        return "bilby_hdf5"
    if any(isinstance(f[k], h5py.Group) and "posterior_samples" in f[k] for k in keys):
        return "pesummary"
    raise ValueError(
        f"{path} has an unknown HDF5 layout: top-level entries {keys}; expected a PyCBC 'samples' "
        "group, a GWTC-1 '*_posterior' dataset, a bilby 'posterior' group or PESummary "
        "'<label>/posterior_samples'"
    )


def _detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        try:
            with h5py.File(path, "r") as f:
                return _hdf5_layout(f, path)
        except OSError as err:
            raise ValueError(f"{path} has an HDF5 suffix but cannot be opened as HDF5: {err}") from err
    if suffix == ".json":
        return "bilby_json"
    if suffix in TEXT_SUFFIXES:
        return "text"
    if suffix in NUMPY_SUFFIXES:
        return "numpy"
    raise ValueError(
        f"cannot tell the format of {path} from its suffix {suffix!r}; supported: "
        f"{HDF5_SUFFIXES + ('.json',) + TEXT_SUFFIXES + NUMPY_SUFFIXES}"
    )


def _analyses(path: Path, fmt: str) -> list[str]:
    if fmt == "gwtc1":
        with h5py.File(path, "r") as f:
            return [k for k in f if k.endswith("_posterior") and f[k].dtype.names]
    if fmt == "pesummary":
        with h5py.File(path, "r") as f:
            return [k for k in f if isinstance(f[k], h5py.Group) and "posterior_samples" in f[k]]
    return [{"pycbc": "samples", "bilby_hdf5": "posterior", "bilby_json": "posterior"}.get(fmt, "table")]


def available_analyses(path: str | os.PathLike) -> list[str]:
    """Names of the analyses (posteriors) stored in a file.

    GWTC-1 files list their ``*_posterior`` datasets, PESummary files their labels; formats
    holding a single posterior return one name (``"samples"``, ``"posterior"`` or ``"table"``).
    """
    path = _existing(path)
    return _analyses(path, _detect_format(path))


def _choose_analysis(path: Path, fmt: str, analysis: str | None) -> str:
    names = _analyses(path, fmt)
    if not names:
        raise ValueError(f"{path} holds no posterior ({fmt} layout)")
    if analysis is not None:
        if analysis not in names:
            raise ValueError(f"analysis {analysis!r} is not in {path}; available: {names}")
        return analysis
    if len(names) == 1:
        return names[0]
    if fmt == "gwtc1" and "Overall_posterior" in names:
        chosen = "Overall_posterior"
    else:
        chosen = next(
            (n for pref in PREFERRED_LABELS for n in names if pref in n.lower().replace(":", "")), None
        )
        if chosen is None:
            raise ValueError(f"{path} holds several analyses {names} and none is marked preferred; pass analysis=")
    logger.info("%s: using analysis %r (the preferred one of %s)", path.name, chosen, names)
    return chosen


# --------------------------------------------------------------------------- raw readers


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_decode(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_decode(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json_safe(attrs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Attributes that survive ``json.dumps``; long or exotic values are dropped.

    Metadata travels into compressed-model files whose size matters, hence the short cap.
    """
    out = {}
    for key, value in attrs:
        value = _decode(value)
        try:
            text = json.dumps(value)
        except TypeError:
            continue
        if len(text) <= 300:
            out[key] = value
    return out


def _columns_of(obj: Any, where: str) -> dict[str, np.ndarray]:
    """1-D float columns of an HDF5 group, structured dataset or PESummary table."""
    if isinstance(obj, h5py.Dataset):
        data = obj[()]
        if data.dtype.names is None:
            raise ValueError(f"{where} is not a table with named columns (dtype {data.dtype})")
        return {name: np.asarray(data[name], dtype=float) for name in data.dtype.names
                if np.issubdtype(data.dtype[name], np.number) and data.dtype[name].shape == ()}
    if "parameter_names" in obj and "samples" in obj:
        names = _decode(obj["parameter_names"][()])
        values = np.asarray(obj["samples"][()], dtype=float)
        return {name: values[:, i] for i, name in enumerate(names)}
    return {k: np.asarray(v[()], dtype=float) for k, v in obj.items()
            if isinstance(v, h5py.Dataset) and v.ndim == 1 and np.issubdtype(v.dtype, np.number)}


def _pycbc_mass_frame(attrs: dict[str, Any]) -> str:
    """``"source"`` when the file's ``mass1``/``mass2`` are source-frame (2-OGC remaps them)."""
    remapped = str(attrs.get("remapped_params", ""))
    variable = [str(v) for v in attrs.get("variable_params", [])]
    if re.search(r"srcmass1'?[\s,]+'?mass1\b", remapped) or ("srcmass1" in variable and "mass1" not in variable):
        return "source"
    return "detector"


def _read_pycbc(path: Path, analysis: str) -> tuple[dict, dict | None, dict]:
    with h5py.File(path, "r") as f:
        frame = _pycbc_mass_frame({k: _decode(v) for k, v in f.attrs.items()})
        attrs = _json_safe(f.attrs.items())
        columns = _columns_of(f["samples"], f"{path}:samples")
        if isinstance(f.get("likelihood_stats"), h5py.Group):
            stats = _columns_of(f["likelihood_stats"], f"{path}:likelihood_stats")
            columns.update({("log_prior" if k == "prior" else k): v for k, v in stats.items()})
        prior = _columns_of(f["prior_samples"], f"{path}:prior_samples") if "prior_samples" in f else None
    mass_names = {"mass1": "mass_1_source", "mass2": "mass_2_source"} if frame == "source" else \
        {"mass1": "mass_1", "mass2": "mass_2"}
    meta = {"mass_frame_in_file": frame, "file_attributes": attrs}
    return _rename(columns, mass_names, meta), None if prior is None else _rename(prior, mass_names, {}), meta


def _read_gwtc1(path: Path, analysis: str) -> tuple[dict, dict | None, dict]:
    with h5py.File(path, "r") as f:
        columns = _columns_of(f[analysis], f"{path}:{analysis}")
        prior = _columns_of(f["prior"], f"{path}:prior") if "prior" in f and f["prior"].dtype.names else None
    meta: dict[str, Any] = {}
    return _rename(columns, {}, meta), None if prior is None else _rename(prior, {}, {}), meta


def _read_pesummary(path: Path, analysis: str) -> tuple[dict, dict | None, dict]:
    with h5py.File(path, "r") as f:
        group = f[analysis]
        columns = _columns_of(group["posterior_samples"], f"{path}:{analysis}/posterior_samples")
        prior = None
        priors = group.get("priors")
        if isinstance(priors, h5py.Group) and "samples" in priors:
            prior = _columns_of(priors["samples"], f"{path}:{analysis}/priors/samples") or None
        attrs = {}
        if isinstance(group.get("approximant"), h5py.Dataset):
            attrs["approximant"] = _decode(group["approximant"][()])
    meta: dict[str, Any] = {"file_attributes": _json_safe(attrs.items())}
    return _rename(columns, {}, meta), None if prior is None else _rename(prior, {}, {}), meta


def _read_bilby_hdf5(path: Path, analysis: str) -> tuple[dict, dict | None, dict]:
    with h5py.File(path, "r") as f:
        columns = _columns_of(f["posterior"], f"{path}:posterior")
        attrs = {k: f[k][()] for k in ("label", "version") if isinstance(f.get(k), h5py.Dataset)}
    meta: dict[str, Any] = {"file_attributes": _json_safe(attrs.items())}
    return _rename(columns, {}, meta), None, meta


def _read_bilby_json(path: Path, analysis: str) -> tuple[dict, dict | None, dict]:
    try:
        with open(path) as f:
            content = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(content, dict) or "posterior" not in content:
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise ValueError(f"{path} is not a bilby result: no 'posterior' entry (found {keys})")
    posterior = content["posterior"]
    if isinstance(posterior, dict) and posterior.get("__dataframe__"):
        posterior = posterior["content"]
    if not isinstance(posterior, dict):
        raise ValueError(f"{path}: 'posterior' should map names to sample lists, got {type(posterior).__name__}")
    columns = {}
    for name, values in posterior.items():
        try:
            array = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            logger.debug("%s: skipping non-numeric posterior column %r", path.name, name)
            continue
        if array.ndim == 1:
            columns[name] = array
    meta: dict[str, Any] = {"file_attributes": _json_safe(
        (k, content[k]) for k in ("label", "version", "log_evidence", "log_bayes_factor") if k in content
    )}
    return _rename(columns, {}, meta), None, meta


def _read_text(path: Path, analysis: str) -> tuple[dict, dict | None, dict]:
    import pandas as pd  # pandas is slow to import and only needed here

    sep = "," if path.suffix.lower() == ".csv" else r"\s+"
    try:
        frame = pd.read_csv(path, sep=sep, comment=None)
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"{path} is empty") from err
    numeric = frame.select_dtypes(include=[np.number])
    dropped = sorted(set(frame.columns) - set(numeric.columns))
    if dropped:
        logger.warning("%s: ignoring non-numeric columns %s", path.name, dropped)
    columns = {str(k): numeric[k].to_numpy(dtype=float) for k in numeric.columns}
    return _rename(columns, {}, {}), None, {}


def _read_numpy(path: Path, analysis: str) -> tuple[dict, dict | None, dict]:
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        if len(arrays) == 1 and next(iter(arrays.values())).dtype.names:
            arrays = _structured_columns(next(iter(arrays.values())), path)
        bad = [k for k, v in arrays.items() if v.ndim != 1]
        if bad:
            raise ValueError(f"{path}: arrays {bad} are not 1-D; store one 1-D array per parameter")
        columns = {k: np.asarray(v, dtype=float) for k, v in arrays.items()}
    else:
        data = np.load(path, allow_pickle=False)
        if data.dtype.names is None:
            raise ValueError(
                f"{path} holds an unnamed array of shape {data.shape}; save a structured array or an "
                ".npz with one named 1-D array per parameter so that columns have names"
            )
        columns = _structured_columns(data, path)
    return _rename(columns, {}, {}), None, {}


def _structured_columns(data: np.ndarray, path: Path) -> dict[str, np.ndarray]:
    return {name: np.asarray(data[name], dtype=float) for name in data.dtype.names
            if np.issubdtype(data.dtype[name], np.number)}


READERS: dict[str, Callable[[Path, str], tuple[dict, dict | None, dict]]] = {
    "pycbc": _read_pycbc,
    "gwtc1": _read_gwtc1,
    "pesummary": _read_pesummary,
    "bilby_hdf5": _read_bilby_hdf5,
    "bilby_json": _read_bilby_json,
    "text": _read_text,
    "numpy": _read_numpy,
}


def _rename(columns: dict[str, np.ndarray], extra: dict[str, str], meta: dict) -> dict[str, np.ndarray]:
    """Apply the alias table (plus ``extra``); PyCBC's ``polarization`` becomes bilby's ``psi``."""
    aliases = {**ALIASES, **extra}
    out: dict[str, np.ndarray] = {}
    for name, values in columns.items():
        if name == "polarization" and "psi" not in columns:
            # PyCBC samples polarization on [0, 2 pi); the strain is invariant under psi -> psi + pi,
            # so folding onto bilby's [0, pi) loses nothing and keeps the support convention.
            out["psi"] = np.mod(values, math.pi)
            meta["psi_convention"] = "PyCBC polarization folded onto [0, pi)"
            continue
        target = aliases.get(name, name)
        if target in out or (target != name and target in columns):
            continue  # the file already has the bilby-named column
        out[target] = values
    return out


# --------------------------------------------------------------------------- derived parameters


def chirp_mass(mass_1: np.ndarray, mass_2: np.ndarray) -> np.ndarray:
    """Chirp mass ``(m1 m2)^(3/5) / (m1 + m2)^(1/5)``, same units as the masses."""
    return (mass_1 * mass_2) ** 0.6 / (mass_1 + mass_2) ** 0.2


def component_masses(chirp: np.ndarray, mass_ratio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(m1, m2)`` from chirp mass and mass ratio ``q = m2 / m1``: ``m1 = Mc (1 + q)^(1/5) q^(-3/5)``."""
    mass_1 = chirp * (1.0 + mass_ratio) ** 0.2 / mass_ratio ** 0.6
    return mass_1, mass_ratio * mass_1


def chi_eff(mass_1, mass_2, a_1, a_2, cos_tilt_1, cos_tilt_2) -> np.ndarray:
    """Effective aligned spin ``(m1 a1 cos t1 + m2 a2 cos t2) / (m1 + m2)`` (dimensionless)."""
    return (mass_1 * a_1 * cos_tilt_1 + mass_2 * a_2 * cos_tilt_2) / (mass_1 + mass_2)


def chi_p(mass_ratio, a_1, a_2, tilt_1, tilt_2) -> np.ndarray:
    """Effective precession spin (Schmidt, Ohme & Hannam 2015, arXiv:1408.1810), ``q = m2/m1 <= 1``.

    ``chi_p = max(a1 sin t1, q (4 q + 3) / (4 + 3 q) a2 sin t2)``.
    """
    q = mass_ratio
    return np.maximum(a_1 * np.sin(tilt_1), q * (4 * q + 3) / (4 + 3 * q) * a_2 * np.sin(tilt_2))


def redshift_from_luminosity_distance(distance: np.ndarray) -> np.ndarray:
    """Redshift of luminosity distances (Mpc) in astropy's Planck15 cosmology.

    ``d_L(z)`` is tabulated on a log grid and inverted by linear interpolation, which is accurate
    to better than 1e-6 in ``z`` and much faster than a root solve per sample.
    """
    from astropy.cosmology import Planck15  # import cost (~1 s) only paid when needed

    distance = np.asarray(distance, dtype=float)
    if distance.size == 0:
        return distance.copy()
    z_max = 1.0
    while Planck15.luminosity_distance(z_max).value < distance.max():
        z_max *= 2.0
    z = np.concatenate([[0.0], np.geomspace(1e-6, z_max, 8000)])
    d_grid = Planck15.luminosity_distance(z).value
    return np.interp(distance, d_grid, z)


def _derive(columns: dict[str, np.ndarray], meta: dict) -> dict[str, np.ndarray]:
    """Add the standard parameters the file lacks but can be computed from what it has."""
    c = dict(columns)

    def missing(*names: str) -> bool:
        return any(n not in c for n in names)

    def have(*names: str) -> bool:
        return all(n in c for n in names)

    if missing("redshift") and have("luminosity_distance") and (
        missing("mass_1", "mass_1_source") or missing("mass_2", "mass_2_source")
        or missing("chirp_mass", "chirp_mass_source")
    ):
        c["redshift"] = redshift_from_luminosity_distance(c["luminosity_distance"])
        meta["redshift_source"] = "luminosity_distance with astropy Planck15"
    elif have("redshift"):
        meta.setdefault("redshift_source", "file")
    if missing("mass_1", "mass_2") and have("chirp_mass", "mass_ratio"):
        c["mass_1"], c["mass_2"] = component_masses(c["chirp_mass"], c["mass_ratio"])
    for frame_name in ("mass_1", "mass_2", "chirp_mass", "total_mass"):
        source = f"{frame_name}_source"
        if have("redshift"):
            if missing(frame_name) and have(source):
                c[frame_name] = c[source] * (1.0 + c["redshift"])
            elif missing(source) and have(frame_name):
                c[source] = c[frame_name] / (1.0 + c["redshift"])
    for suffix in ("", "_source"):
        m1, m2 = f"mass_1{suffix}", f"mass_2{suffix}"
        if have(m1, m2):
            if missing(f"chirp_mass{suffix}"):
                c[f"chirp_mass{suffix}"] = chirp_mass(c[m1], c[m2])
            if missing(f"total_mass{suffix}"):
                c[f"total_mass{suffix}"] = c[m1] + c[m2]
    if missing("mass_ratio") and have("mass_1", "mass_2"):
        c["mass_ratio"] = c["mass_2"] / c["mass_1"]
    if missing("luminosity_distance") and meta.get("redshift_source") == "file":
        from astropy.cosmology import Planck15

        c["luminosity_distance"] = Planck15.luminosity_distance(c["redshift"]).value
        meta["luminosity_distance_source"] = "redshift with astropy Planck15"
    for angle, cosine in (("tilt_1", "cos_tilt_1"), ("tilt_2", "cos_tilt_2"),
                          ("theta_jn", "cos_theta_jn"), ("iota", "cos_iota")):
        if missing(cosine) and have(angle):
            c[cosine] = np.cos(c[angle])
        elif missing(angle) and have(cosine):
            c[angle] = np.arccos(np.clip(c[cosine], -1.0, 1.0))
    if missing("sin_dec") and have("dec"):
        c["sin_dec"] = np.sin(c["dec"])
    if missing("phi_12") and have("phi_1", "phi_2"):
        c["phi_12"] = np.mod(c["phi_2"] - c["phi_1"], 2 * math.pi)
    if missing("chi_eff") and have("mass_1", "mass_2", "a_1", "a_2", "cos_tilt_1", "cos_tilt_2"):
        c["chi_eff"] = chi_eff(c["mass_1"], c["mass_2"], c["a_1"], c["a_2"], c["cos_tilt_1"], c["cos_tilt_2"])
    if missing("chi_p") and have("mass_ratio", "a_1", "a_2", "tilt_1", "tilt_2"):
        c["chi_p"] = chi_p(c["mass_ratio"], c["a_1"], c["a_2"], c["tilt_1"], c["tilt_2"])
    return c


def _validate(columns: dict[str, np.ndarray], names: Iterable[str], where: str) -> None:
    """Raise ``ValueError`` for empty, non-finite or physically impossible columns."""
    for name in names:
        values = columns[name]
        if values.size == 0:
            raise ValueError(f"{where}: column {name!r} is empty")
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(f"{where}: column {name!r} has {int(bad.sum())} NaN or infinite value(s)")
        kind, lower, upper = physical_support(name)
        if kind == "identity":
            continue
        outside = values <= lower if kind == "log" else (values < lower) | (values > upper)
        if outside.any():
            bound = f"> {lower}" if kind == "log" else f"in [{lower:.6g}, {upper:.6g}]"
            raise ValueError(
                f"{where}: {int(outside.sum())} value(s) of {name!r} are out of its physical range "
                f"(must be {bound}; e.g. {values[outside][0]!r}); check the file's units and conventions"
                + (" (mass_1 must be the heavier mass)" if name == "mass_ratio" else "")
            )


def _event_name(path: Path) -> str | None:
    """Event name from the usual file-naming conventions (``GW150914``, ``GW190521_030229``)."""
    match = re.search(r"(?i)gw(\d{6}(?:_\d{6})?)", path.name)
    if match:
        return "GW" + match.group(1)
    match = re.search(r"(\d{6})_\d{2}H_\d{2}M_\d{2}UTC", path.name)  # 2-OGC trigger-time names
    return "GW" + match.group(1) if match else None


def read_posterior(
    path: str | os.PathLike,
    analysis: str | None = None,
    params: Sequence[str] | None = None,
) -> PosteriorTable:
    """Read a posterior sample file of any supported layout into a :class:`PosteriorTable`.

    Parameters
    ----------
    path : str or path-like
        Posterior file; its layout is detected from the suffix and contents (see module doc).
    analysis : str, optional
        Which posterior of a multi-analysis file (GWTC-1 dataset, PESummary label); see
        :func:`available_analyses`.  By default the preferred one (``Overall_posterior``, a
        ``Mixed`` label, ``PublicationSamples``); the choice is logged and stored in metadata.
    params : sequence of str, optional
        bilby names to keep, in this order (derived names allowed); by default every column.

    Returns
    -------
    PosteriorTable

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        Unknown layout or analysis, empty tables, NaNs, values out of physical range.
    KeyError
        If a requested parameter is neither in the file nor derivable; lists what is available.
    """
    path = _existing(path)
    fmt = _detect_format(path)
    chosen = _choose_analysis(path, fmt, analysis)
    columns, prior, meta = READERS[fmt](path, chosen)
    if not columns:
        raise ValueError(f"{path} ({fmt}, analysis {chosen!r}) has no numeric sample columns")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"{path}: sample columns have different lengths {sorted(lengths)}")
    if lengths == {0}:
        raise ValueError(f"{path} ({fmt}, analysis {chosen!r}) holds no samples (empty datasets)")
    file_order = list(columns)
    columns = _derive(columns, meta)
    derived = [k for k in columns if k not in file_order]
    if isinstance(params, str):
        params = [params]
    names = tuple(file_order + derived) if params is None else tuple(params)
    missing = [p for p in names if p not in columns]
    if missing:
        raise KeyError(f"{path} has no parameters {missing} and they cannot be derived; available: {sorted(columns)}")
    _validate(columns, names, str(path))
    samples = {name: columns[name] for name in names}
    prior_samples = None
    if prior is not None:
        prior = _derive(prior, {})
        kept = [n for n in names if n in prior]
        _validate(prior, kept, f"{path} (prior samples)")
        prior_samples = {n: prior[n] for n in kept}
    meta.update(
        source_path=str(path.resolve()),
        format=fmt,
        analysis=chosen,
        available_analyses=_analyses(path, fmt),
        sha256=file_sha256(path),
        event=_event_name(path),
        n_samples=int(next(iter(samples.values())).size) if samples else 0,
        derived_parameters=[n for n in derived if n in samples],
        has_prior_samples=prior_samples is not None,
    )
    return PosteriorTable(samples=samples, parameters=names, metadata=meta, prior_samples=prior_samples)
