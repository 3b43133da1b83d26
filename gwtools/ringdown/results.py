"""Results of a ringdown run: one self-describing HDF5 file, and its bilby view.

Layout (``format_version`` 1)::

    /                      attrs: format_version, label, created_utc, run_id
    /config                JSON string: the resolved run configuration
    /versions              attrs: package -> version
    /checksums             attrs: input file -> sha256
    /posterior/<name>      (n,) equally weighted samples; attrs units; group attrs
                           ``parameters`` (stored order), ``search_parameters`` (sampled ones),
                           ``search_ranges``, ``search_prior_kinds`` (``uniform`` or ``sine``)
                           and ``search_periodic`` (bools), both in search-parameter order
    /evidence/<prior>      attrs ln_z, ln_z_err (one group per amplitude prior)
    /diagnostics           attrs: scalar run and importance-sampling diagnostics
    /waveforms/<detector>/<name>   arrays for the data plots (times, whitened data, ...)
    /noise/<detector>/<name>       the noise model (PSD, ACF) and its whiteness checks
                                   (optional: absent in files written before it was stored)

Files are written atomically (:func:`gwtools.io.atomic.atomic_path`) and hold only arrays and
strings, no pickles; :func:`read_result` refuses an unknown ``format_version``, and a file that
differs from what its run published (the manifest of its result set, see
:mod:`gwtools.io.outputs`).  Files written before the prior kinds were stored read as uniform
priors, but for ``inclination``: the pipeline only ever sampled it flat in its cosine (a sine prior).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import multiprocessing
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gwtools.io.atomic import atomic_path
from gwtools.io.outputs import verify_member
from gwtools.ringdown.priors import PRIOR_KINDS

__all__ = [
    "FORMAT_VERSION",
    "RingdownResult",
    "output_worker",
    "bilby_priors",
    "credible_interval",
    "read_result",
    "save_bilby_result",
    "software_versions",
    "to_bilby_result",
    "write_result",
]

FORMAT_VERSION = 1

# LaTeX labels of the search parameters in bilby's plots.
_LATEX = {
    "final_mass": r"$M_f\,[M_\odot]$",
    "final_spin": r"$\chi_f$",
    "inclination": r"$\iota$",
    "polarization": r"$\psi$",
    "start_shift": r"$\delta t_0\,[\mathrm{s}]$",
}

_PACKAGES = ("gwtools", "jax", "jaxlib", "blackjax", "dynesty", "bilby", "numpy", "scipy", "h5py")


@dataclass(frozen=True)
class RingdownResult:
    """Everything a ringdown run produced, as plain arrays and strings.

    Attributes
    ----------
    label : str
        Run label (file-name stem).
    posterior : dict of str to ndarray
        Equally weighted posterior samples, each of shape (n,), in the stored column order.
    search_parameters : tuple of str
        The parameters the sampler explored (the others are reconstructed or derived).
    search_ranges : dict of str to (float, float)
        Prior range of each search parameter.
    prior_kinds : dict of str to str
        Prior shape of each search parameter, one of :data:`PRIOR_KINDS`; a parameter left
        out is uniform.
    periodic_parameters : tuple of str
        Search parameters the sampler wrapped around their range (angles).
    log_evidence : dict of str to (float, float)
        ln Z and its 1-sigma error per amplitude prior (``"physical"``, ``"flat"``, ...).
    config : dict
        Resolved configuration (JSON-serializable).
    units : dict of str to str
        Units of the posterior columns (missing: dimensionless).
    diagnostics : dict of str to float
        Scalars: likelihood calls, wall time, effective sample sizes, ...
    versions : dict of str to str
        Software versions.
    checksums : dict of str to str
        sha256 of each input file, keyed by path.
    waveforms : dict of str to dict of str to ndarray
        Per detector, arrays for the data plots.
    noise : dict of str to dict of str to ndarray
        Per detector, the noise model and its checks
        (:func:`gwtools.ringdown.pipeline.noise_arrays`): ``frequency`` (Hz) and ``psd``
        (Hz^-1) of the conditioned data, ``acf`` (strain^2), the Welch scatter
        ``psd_lower``/``psd_upper``, the PSD file's ``file_frequency``/``file_psd``, and the
        whitened off-source stretches (``stretch_*``, ``histogram_*``, ``autocorrelation``).
    run_id : str
        Identifier of the run that made the result (:func:`gwtools.io.outputs.new_run_id`);
        empty for results made outside a pipeline run.
    """

    label: str
    posterior: Mapping[str, np.ndarray]
    search_parameters: tuple[str, ...]
    search_ranges: Mapping[str, tuple[float, float]]
    log_evidence: Mapping[str, tuple[float, float]]
    config: Mapping[str, Any]
    units: Mapping[str, str] = field(default_factory=dict)
    diagnostics: Mapping[str, float] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    checksums: Mapping[str, str] = field(default_factory=dict)
    waveforms: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)
    run_id: str = ""
    prior_kinds: Mapping[str, str] = field(default_factory=dict)
    periodic_parameters: tuple[str, ...] = ()
    noise: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lengths = {name: np.shape(values) for name, values in self.posterior.items()}
        if len({shape for shape in lengths.values()}) > 1:
            raise ValueError(f"posterior columns differ in length: {lengths}")
        if any(len(shape) != 1 for shape in lengths.values()):
            raise ValueError(f"posterior columns must be 1-D arrays, got shapes {lengths}")
        missing = [p for p in self.search_parameters if p not in self.posterior]
        if missing:
            raise ValueError(f"search parameters {missing} have no posterior column")
        if set(self.search_ranges) != set(self.search_parameters):
            raise ValueError(
                f"search_ranges {sorted(self.search_ranges)} must name exactly the search "
                f"parameters {sorted(self.search_parameters)}"
            )
        for name, kind in self.prior_kinds.items():
            if name not in self.search_parameters:
                raise ValueError(f"prior kind given for {name!r}, which is not a search parameter")
            if kind not in PRIOR_KINDS:
                raise ValueError(f"prior of {name}: unknown kind {kind!r}; choose one of {PRIOR_KINDS}")
        stray = [p for p in self.periodic_parameters if p not in self.search_parameters]
        if stray:
            raise ValueError(f"periodic parameters {stray} are not search parameters")

    def prior_kind(self, name: str) -> str:
        """Prior shape of search parameter ``name`` (``"uniform"`` unless given)."""
        return self.prior_kinds.get(name, "uniform")

    @property
    def n_samples(self) -> int:
        """Number of posterior samples."""
        return len(next(iter(self.posterior.values()))) if self.posterior else 0


def software_versions() -> dict[str, str]:
    """Installed versions of gwtools and the packages its results depend on."""
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def credible_interval(samples, level: float = 0.9) -> tuple[float, float, float]:
    """Median and the equal-tailed credible interval of 1-D samples.

    Returns
    -------
    (median, lower, upper)
    """
    if not 0 < level < 1:
        raise ValueError(f"credible level must lie in (0, 1), got {level}")
    samples = np.asarray(samples, dtype=float)
    if samples.size == 0:
        raise ValueError("no samples to summarize")
    tail = 50 * (1 - level)
    lower, median, upper = np.percentile(samples, [tail, 50, 100 - tail])
    return float(median), float(lower), float(upper)


def _scalar_attrs(group: h5py.Group, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        group.attrs[key] = value


def write_result(result: RingdownResult, path: str | os.PathLike) -> Path:
    """Write ``result`` to an HDF5 file atomically; return the path."""
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["label"] = result.label
        f.attrs["created_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
        f.attrs["run_id"] = result.run_id
        f["config"] = json.dumps(result.config, sort_keys=False)
        _scalar_attrs(f.create_group("versions"), result.versions)
        _scalar_attrs(f.create_group("checksums"), result.checksums)
        posterior = f.create_group("posterior")
        posterior.attrs["parameters"] = list(result.posterior)
        posterior.attrs["search_parameters"] = list(result.search_parameters)
        posterior.attrs["search_ranges"] = np.array(
            [result.search_ranges[p] for p in result.search_parameters], dtype=float
        ).reshape(-1, 2)
        posterior.attrs["search_prior_kinds"] = [
            result.prior_kind(p) for p in result.search_parameters
        ]
        posterior.attrs["search_periodic"] = np.array(
            [p in result.periodic_parameters for p in result.search_parameters], dtype=bool
        )
        for name, values in result.posterior.items():
            dataset = posterior.create_dataset(name, data=np.asarray(values, dtype=float))
            if name in result.units:
                dataset.attrs["units"] = result.units[name]
        evidence = f.create_group("evidence")
        for prior, (ln_z, ln_z_err) in result.log_evidence.items():
            group = evidence.create_group(prior)
            group.attrs["ln_z"] = float(ln_z)
            group.attrs["ln_z_err"] = float(ln_z_err)
        _scalar_attrs(f.create_group("diagnostics"), result.diagnostics)
        for group_name, content in (("waveforms", result.waveforms), ("noise", result.noise)):
            top = f.create_group(group_name)
            for detector, arrays in content.items():
                group = top.create_group(detector)
                for name, values in arrays.items():
                    group.create_dataset(name, data=np.asarray(values, dtype=float))
    return path


def _plain_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_result(path: str | os.PathLike) -> RingdownResult:
    """Read a results file written by :func:`write_result`.

    A file published by a pipeline run (``<label>.h5`` beside ``<label>.manifest.json``) is
    first checked against the manifest of its result set.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a gwtools ringdown result or has another format version, or is not
        the file its run published (its result set is being published, or mixes runs).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file {path} does not exist")
    verify_member(path, path.stem)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path} is not an HDF5 file ({err})") from None
    with f:
        version = f.attrs.get("format_version")
        if version is None or "posterior" not in f:
            raise ValueError(f"{path} is not a gwtools ringdown result (no format_version)")
        if int(version) != FORMAT_VERSION:
            raise ValueError(
                f"{path} has results format version {int(version)}; this gwtools reads version "
                f"{FORMAT_VERSION}: use the gwtools version that wrote it"
            )
        posterior_group = f["posterior"]
        order = [str(name) for name in posterior_group.attrs["parameters"]]
        posterior = {name: posterior_group[name][()] for name in order}
        units = {
            name: str(_plain_attr(posterior_group[name].attrs["units"]))
            for name in order
            if "units" in posterior_group[name].attrs
        }
        search = tuple(str(p) for p in posterior_group.attrs["search_parameters"])
        ranges = posterior_group.attrs["search_ranges"]
        if "search_prior_kinds" in posterior_group.attrs:
            kinds = [str(_plain_attr(k)) for k in posterior_group.attrs["search_prior_kinds"]]
            periodic = [bool(v) for v in posterior_group.attrs["search_periodic"]]
        else:  # written before prior kinds were stored (see the module docstring)
            kinds = ["sine" if p == "inclination" else "uniform" for p in search]
            periodic = [False] * len(search)
        evidence = {
            prior: (float(group.attrs["ln_z"]), float(group.attrs["ln_z_err"]))
            for prior, group in f["evidence"].items()
        }
        waveforms = {
            detector: {name: group[name][()] for name in group}
            for detector, group in f["waveforms"].items()
        }
        noise = {
            detector: {name: group[name][()] for name in group}
            for detector, group in f["noise"].items()
        } if "noise" in f else {}
        config = f["config"][()]
        return RingdownResult(
            label=str(_plain_attr(f.attrs["label"])),
            posterior=posterior,
            search_parameters=search,
            search_ranges={p: (float(lo), float(hi)) for p, (lo, hi) in zip(search, ranges)},
            log_evidence=evidence,
            config=json.loads(_plain_attr(config)),
            units=units,
            diagnostics={k: _plain_attr(v) for k, v in f["diagnostics"].attrs.items()},
            versions={k: str(_plain_attr(v)) for k, v in f["versions"].attrs.items()},
            checksums={k: str(_plain_attr(v)) for k, v in f["checksums"].attrs.items()},
            waveforms=waveforms,
            run_id=str(_plain_attr(f.attrs.get("run_id", ""))),
            prior_kinds=dict(zip(search, kinds)),
            periodic_parameters=tuple(p for p, wrapped in zip(search, periodic) if wrapped),
            noise=noise,
        )


def bilby_priors(
    ranges: Mapping[str, tuple[float, float]],
    kinds: Mapping[str, str] | None = None,
    periodic: tuple[str, ...] = (),
):
    """The priors of search parameters as a :class:`bilby.core.prior.PriorDict`.

    Parameters
    ----------
    ranges : dict of str to (float, float)
        Range of each parameter (rad for angles).
    kinds : dict of str to str, optional
        ``"uniform"`` (:class:`bilby.core.prior.Uniform`) or ``"sine"``
        (:class:`bilby.core.prior.Sine`, an inclination flat in its cosine); default uniform.
        bilby's ``Sine`` draws and integrates a truncated range correctly, but its ``prob``
        stays normalized on [0, pi]: off by the constant factor 2 / (cos lower - cos upper).
    periodic : tuple of str
        Parameters with periodic boundaries (``boundary="periodic"``), e.g. a polarization angle.

    Returns
    -------
    bilby.core.prior.PriorDict
        In the order of ``ranges``.
    """
    import bilby

    classes = {"uniform": bilby.core.prior.Uniform, "sine": bilby.core.prior.Sine}
    priors = {}
    for name, (lower, upper) in ranges.items():
        kind = (kinds or {}).get(name, "uniform")
        if kind not in classes:
            raise ValueError(f"prior of {name}: unknown kind {kind!r}; choose one of {PRIOR_KINDS}")
        priors[name] = classes[kind](
            minimum=lower, maximum=upper, name=name, latex_label=_LATEX.get(name),
            boundary="periodic" if name in periodic else None,
        )
    return bilby.core.prior.PriorDict(priors)


def to_bilby_result(result: RingdownResult, prior: str = "physical"):
    """The result as a :class:`bilby.core.result.Result`.

    Parameters
    ----------
    result : RingdownResult
    prior : str
        Amplitude prior whose ln Z becomes ``log_evidence``.

    Notes
    -----
    The posterior DataFrame holds every column; ``search_parameter_keys`` are the sampled
    parameters, with their priors (:func:`bilby_priors`: ``Uniform`` or ``Sine``, periodic
    boundaries for wrapped angles).  The configuration, versions, checksums, the other priors'
    ln Z, the diagnostics and the run id go into ``meta_data``.  ``log_noise_evidence``
    is the diagnostic ``log_noise_evidence`` (ln L of the data without signal), NaN if absent.
    """
    import bilby
    import pandas as pd

    if prior not in result.log_evidence:
        raise ValueError(
            f"no evidence for prior {prior!r} in {result.label}; available: "
            f"{', '.join(result.log_evidence)}"
        )
    ln_z, ln_z_err = result.log_evidence[prior]
    priors = bilby_priors(
        {name: result.search_ranges[name] for name in result.search_parameters},
        result.prior_kinds,
        result.periodic_parameters,
    )
    return bilby.core.result.Result(
        label=result.label,
        sampler=result.config.get("sampler", {}).get("engine", "dynesty"),
        search_parameter_keys=list(result.search_parameters),
        fixed_parameter_keys=[],
        priors=priors,
        posterior=pd.DataFrame({k: np.asarray(v) for k, v in result.posterior.items()}),
        log_evidence=float(ln_z),
        log_evidence_err=float(ln_z_err),
        log_noise_evidence=float(result.diagnostics.get("log_noise_evidence", float("nan"))),
        num_likelihood_evaluations=int(result.diagnostics.get("ncall", 0)),
        sampling_time=float(result.diagnostics.get("sampling_walltime", 0.0)),
        meta_data={
            "run_id": result.run_id,
            "evidence_prior": prior,
            "log_evidence_by_prior": {k: list(v) for k, v in result.log_evidence.items()},
            "config": dict(result.config),
            "versions": dict(result.versions),
            "checksums": dict(result.checksums),
            "diagnostics": dict(result.diagnostics),
            "units": dict(result.units),
        },
    )


def save_bilby_result(result: RingdownResult, path: str | os.PathLike, prior: str = "physical") -> Path:
    """Write the bilby view of ``result`` atomically, as bilby HDF5 (``.hdf5``) or JSON (``.json``).

    Read it back with ``bilby.core.result.read_in_result(path)``.  HDF5 writes in a tenth of
    the time of JSON for a posterior of ~10^4 samples; both hold the same content.
    """
    path = Path(path)
    extensions = {".hdf5": "hdf5", ".json": "json"}
    if path.suffix not in extensions:
        raise ValueError(f"bilby results are written as HDF5 or JSON: give a .hdf5 or .json path, got {path}")
    extension = extensions[path.suffix]
    bilby_result = to_bilby_result(result, prior)
    with atomic_path(path) as tmp:
        written = tmp.with_suffix(path.suffix)
        bilby_result.save_to_file(filename=str(written), extension=extension, overwrite=True)
        if not written.is_file():
            # bilby logs a failed write and falls back to a pickle: refuse that silently.
            raise ValueError(f"bilby could not write {path} as {extension} (see the log above)")
        os.replace(written, tmp)
    return path


def _prepare_output_worker() -> None:
    """The imports of :func:`output_worker`'s tasks (bilby, matplotlib, corner: about 3 s)."""
    import bilby  # noqa: F401
    import matplotlib

    matplotlib.use("Agg")  # the worker only writes files
    import gwtools.ringdown.plots  # noqa: F401


@contextlib.contextmanager
def output_worker() -> Iterator[Executor]:
    """A second process that writes part of a run's outputs (the bilby result, half the figures).

    It starts on entering and imports what its tasks need at once, so that the imports overlap
    the sampling rather than follow it; "spawn" rather than fork, because a forked copy of a
    process whose JAX threads are running can deadlock.
    """
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_prepare_output_worker) as pool:
        pool.submit(int)  # the process starts with its first task
        yield pool
