"""The two files of a compressed posterior: typed header, content checksum, reading, writing.

A compressed posterior (:class:`~gwtools.compression.posterior.CompressedPosterior`) is stored
twice:

``MODEL.weights.npz``
    The spline network: uniform knot grids, B-spline coefficients (float16), SiLU base
    scales (float16) and node biases, plus the JSON header.
``MODEL.expr.json``
    The same network after symbolic regression, the header alone: every node of every layer
    is a closed-form formula of the previous layer's nodes (:mod:`.formulas`).

The header (:class:`ModelHeader`) names the parameters and their transforms, and per density
(the posterior and, where the source had prior draws, the prior) the network sizes and the
standardisation (:class:`DensityHeader`).  Version 2 of the format adds a content checksum:
SHA-256 over the canonical JSON of the whole header (the checksum itself left out) and, for a
weights file, every array's name, dtype, shape and bytes.  Loading verifies it, and checks that
the header agrees with the network: parameter count, transforms and their bounds, array shapes
and formula counts.  A deliberately edited file is accepted with ``verify=False`` (CLI:
``--no-verify``) or re-stamped with :func:`restamp` (``gwtools restamp FILE``).  Version 1
files (no checksum) still load, with a logged warning that they cannot be verified.

numpy only: no torch, no pykan.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gwtools.compression.formulas import formula_variables
from gwtools.compression.layers import ExpressionLayer, SplineLayer
from gwtools.compression.mixture import MixtureDensity, made_masks
from gwtools.compression.posterior import CompressedPosterior
from gwtools.compression.splines import SPLINE_ORDER
from gwtools.compression.transforms import (
    BOUNDARY_PAD,
    TransformStack,
    physical_support,
)
from gwtools.io.atomic import atomic_path

__all__ = [
    "EXPRESSIONS_SUFFIX",
    "FORMAT_VERSION",
    "WEIGHTS_SUFFIX",
    "DensityHeader",
    "ModelHeader",
    "content_checksum",
    "load",
    "model_paths",
    "posterior_from_expressions",
    "posterior_from_weights",
    "restamp",
    "write_expressions",
    "write_weights",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
#: Versions this module reads: 1 (no checksum) and 2.
_READABLE_VERSIONS = (1, 2)
WEIGHTS_SUFFIX = ".weights.npz"
EXPRESSIONS_SUFFIX = ".expr.json"
_FORMATS = {"weights": "gwtools-kan-weights", "expressions": "gwtools-kan-expressions"}
_DENSITIES = ("posterior", "prior")
_LAYER_ARRAYS = ("grid_lo", "grid_step", "coef", "scale_base", "bias")


def _tuple(values, what: str) -> tuple:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{what} must be a list, got {values!r}")
    return tuple(values)


@dataclass(frozen=True)
class DensityHeader:
    """Sizes and standardisation of one mixture density, and its formulas in an expressions file.

    Parameters
    ----------
    n_dim : int
        Dimensions ``d`` (one per parameter).
    hidden : int
        Hidden KAN units.
    n_components : int
        Gaussians per conditional ``K``.
    mean, scale : tuple of float, length d
        Standardisation of the unbounded coordinates: ``z = (y - mean) / scale``.
    layers : tuple of tuple of str, optional
        Expressions files only: per layer, one formula per node (``hidden`` first-layer
        nodes, ``d * 3 K`` output nodes).
    """

    n_dim: int
    hidden: int
    n_components: int
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    layers: tuple[tuple[str, ...], ...] | None = None

    def __post_init__(self) -> None:
        for name in ("n_dim", "hidden", "n_components"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("mean", "scale"):
            values = tuple(float(v) for v in _tuple(getattr(self, name), name))
            if len(values) != self.n_dim:
                raise ValueError(f"{name} has {len(values)} entries for n_dim = {self.n_dim}")
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"{name} holds non-finite values {list(values)}")
            object.__setattr__(self, name, values)
        if min(self.scale) <= 0.0:
            raise ValueError(f"scale must be positive, got {list(self.scale)}")
        if self.layers is not None:
            layers = tuple(tuple(str(f) for f in _tuple(layer, "a formula layer"))
                           for layer in _tuple(self.layers, "layers"))
            expected = [mask.shape[1] for mask in self.masks]
            if len(layers) != len(expected):
                raise ValueError(f"{len(layers)} formula layers, expected {len(expected)}")
            sizes = (f"n_dim = {self.n_dim}, hidden = {self.hidden}, "
                     f"n_components = {self.n_components}")
            for index, (layer, count) in enumerate(zip(layers, expected)):
                if len(layer) != count:
                    raise ValueError(f"layer {index}: {len(layer)} formulas, expected {count} "
                                     f"for the network sizes {sizes}")
            object.__setattr__(self, "layers", layers)

    @property
    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """The MADE masks of the network (:func:`~gwtools.compression.mixture.made_masks`)."""
        return made_masks(self.n_dim, self.hidden, self.n_components)

    def to_dict(self) -> dict:
        out = {"n_dim": self.n_dim, "hidden": self.hidden, "n_components": self.n_components,
               "mean": list(self.mean), "scale": list(self.scale)}
        if self.layers is not None:
            out["layers"] = [list(layer) for layer in self.layers]
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> DensityHeader:
        """Rebuild from :meth:`to_dict` output; unknown or missing keys raise ``ValueError``."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = sorted(set(d) - fields), sorted(fields - {"layers"} - set(d))
        if unknown or missing:
            raise ValueError(f"density header has unknown keys {unknown} / lacks keys {missing}")
        return cls(**d)


def _check_bounds(transforms: TransformStack) -> None:
    """Each transform's interval must lie in its parameter's physical support (widened by
    the logit padding of :func:`~gwtools.compression.transforms.default_transform`)."""
    for t in transforms.transforms:
        _, lower, upper = physical_support(t.name)
        if t.kind == "identity":
            continue
        pad = 0.0 if lower is None or upper is None else 2 * BOUNDARY_PAD * (upper - lower)
        low_ok = lower is None or t.lower >= lower - pad
        high_ok = upper is None or (t.upper is not None and t.upper <= upper + pad)
        if not (low_ok and high_ok):
            raise ValueError(
                f"the {t.kind} transform of {t.name!r} spans [{t.lower}, {t.upper}], outside the "
                f"parameter's physical support [{lower}, {upper}]"
            )


@dataclass(frozen=True)
class ModelHeader:
    """Everything of a model file but its arrays: parameters, transforms, densities, metadata.

    Parameters
    ----------
    parameters : tuple of str
        Parameter names (bilby convention), the column order of samples.
    transforms : gwtools.compression.transforms.TransformStack
        One transform per parameter, in the same order.
    posterior : DensityHeader
    prior : DensityHeader, optional
        The prior model, where the source had prior draws.
    metadata : dict
        JSON-ready provenance and fidelity (not used in sampling, but covered by the checksum).

    Raises
    ------
    ValueError
        If the parts disagree: parameter count against the densities' dimensions, transform
        names against the parameters, transform bounds outside the physical supports.
    """

    parameters: tuple[str, ...]
    transforms: TransformStack
    posterior: DensityHeader
    prior: DensityHeader | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        parameters = tuple(str(p) for p in _tuple(self.parameters, "parameters"))
        object.__setattr__(self, "parameters", parameters)
        for name in _DENSITIES:
            part = getattr(self, name)
            if part is not None and part.n_dim != len(parameters):
                raise ValueError(
                    f"the header lists {len(parameters)} parameters {list(parameters)}, but the "
                    f"{name} network models {part.n_dim} dimensions"
                )
        if self.transforms.names != parameters:
            raise ValueError(
                f"the transforms are for {list(self.transforms.names)}, the parameters are "
                f"{list(parameters)}"
            )
        _check_bounds(self.transforms)

    @property
    def densities(self) -> dict[str, DensityHeader]:
        """The densities present, by name (``posterior``, ``prior``)."""
        return {name: getattr(self, name) for name in _DENSITIES if getattr(self, name) is not None}

    def to_dict(self) -> dict:
        out = {"parameters": list(self.parameters), "transforms": self.transforms.to_dict()}
        out.update({name: part.to_dict() for name, part in self.densities.items()})
        out["metadata"] = self.metadata
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> ModelHeader:
        """Rebuild from :meth:`to_dict` output; unknown or missing keys raise ``ValueError``."""
        required = {"parameters", "transforms", "posterior"}
        unknown, missing = sorted(set(d) - required - {"prior", "metadata"}), sorted(required - set(d))
        if unknown or missing:
            raise ValueError(f"header has unknown keys {unknown} / lacks keys {missing}")
        densities = {}
        for name in _DENSITIES:
            try:
                densities[name] = None if d.get(name) is None else DensityHeader.from_dict(d[name])
            except (ValueError, TypeError) as err:
                raise ValueError(f"{name} density: {err}") from None
        return cls(parameters=d["parameters"], transforms=TransformStack.from_dict(d["transforms"]),
                   metadata=dict(d.get("metadata") or {}), **densities)


def content_checksum(header: Mapping, arrays: Mapping[str, np.ndarray] | None = None) -> str:
    """``"sha256:<hex>"`` of a file's content: header JSON (canonical: sorted keys, no spaces;
    the ``checksum`` entry left out) and, for a weights file, each array's name, dtype, shape
    and bytes, in name order."""
    digest = hashlib.sha256()
    body = {key: value for key, value in header.items() if key != "checksum"}
    digest.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(arrays or {}):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"\n{name}:{array.dtype.str}:{list(array.shape)}\n".encode())
        digest.update(array.tobytes())
    return "sha256:" + digest.hexdigest()


def model_paths(model: str | os.PathLike) -> tuple[Path, Path]:
    """Weights and expressions paths of a model stem (``MODEL`` -> two files)."""
    stem = str(model)
    for suffix in (WEIGHTS_SUFFIX, EXPRESSIONS_SUFFIX):
        stem = stem.removesuffix(suffix)
    return Path(stem + WEIGHTS_SUFFIX), Path(stem + EXPRESSIONS_SUFFIX)


def _spline_layers(arrays: Mapping[str, np.ndarray], prefix: str, part: DensityHeader) -> tuple:
    """The spline layers of one density from its ``<prefix>layer<l>_<name>`` arrays, checked
    against the MADE masks of the header's sizes."""
    layers = []
    for index, mask in enumerate(part.masks):
        key = f"{prefix}layer{index}_"
        missing = [key + name for name in _LAYER_ARRAYS if key + name not in arrays]
        if missing:
            raise ValueError(f"arrays {missing} are missing")
        n_in, n_out = mask.shape
        coef_edges = np.asarray(arrays[key + "coef"], dtype=np.float64)
        if coef_edges.ndim != 2 or coef_edges.shape[1] < SPLINE_ORDER + 1:
            raise ValueError(f"{key}coef has shape {coef_edges.shape}, expected (edges, G + 3)")
        n_basis = coef_edges.shape[1]
        if coef_edges.shape[0] != mask.sum():
            raise ValueError(f"{key}coef has {coef_edges.shape[0]} edges, mask has {mask.sum()}")
        expected = {"grid_lo": (n_in,), "grid_step": (n_in,), "scale_base": (int(mask.sum()),),
                    "bias": (n_out,)}
        for name, shape in expected.items():
            if np.shape(arrays[key + name]) != shape:
                raise ValueError(f"{key}{name} has shape {np.shape(arrays[key + name])}, expected "
                                 f"{shape} for the header's network sizes")
        weights = np.zeros(mask.shape + (n_basis + 1,))
        weights[mask, :n_basis] = coef_edges
        weights[mask, n_basis] = arrays[key + "scale_base"]
        layers.append(
            SplineLayer(
                grid_lo=np.asarray(arrays[key + "grid_lo"], dtype=np.float64),
                grid_step=np.asarray(arrays[key + "grid_step"], dtype=np.float64),
                n_intervals=n_basis - SPLINE_ORDER,
                weights=np.ascontiguousarray(weights.transpose(0, 2, 1).reshape(-1, n_out)),
                bias=np.asarray(arrays[key + "bias"], dtype=np.float64),
            )
        )
    return tuple(layers)


def _expression_layers(name: str, part: DensityHeader) -> tuple:
    if part.layers is None:
        raise ValueError(f"the {name} density has no formula layers")
    layers = []
    for index, (formulas, mask) in enumerate(zip(part.layers, part.masks)):
        for node, text in enumerate(formulas):
            # A formula reaching an input the MADE masks do not connect would break the
            # autoregressive order (and the density's normalisation).
            stray = sorted(i for i in formula_variables(text)
                           if i >= mask.shape[0] or not mask[i, node])
            if stray:
                raise ValueError(
                    f"{name} layer {index} node {node} uses inputs {stray}, which the "
                    "autoregressive structure does not connect to it; the expressions "
                    "file is corrupt or was edited"
                )
        layers.append(ExpressionLayer.from_formulas(formulas, mask.shape[0]))
    return tuple(layers)


def _posterior(header: ModelHeader, build_layers, source: str) -> CompressedPosterior:
    """A :class:`CompressedPosterior` whose network layers come from ``build_layers(name, part)``."""
    densities = {
        name: MixtureDensity(
            layers=build_layers(name, part),
            mean=np.asarray(part.mean, dtype=np.float64),
            scale=np.asarray(part.scale, dtype=np.float64),
            n_components=part.n_components,
        )
        for name, part in header.densities.items()
    }
    return CompressedPosterior(
        parameters=header.parameters,
        transforms=header.transforms,
        density=densities["posterior"],
        prior=densities.get("prior"),
        metadata=header.metadata,
        source=source,
    )


def posterior_from_weights(header: ModelHeader, arrays: Mapping[str, np.ndarray]) -> CompressedPosterior:
    """Build a :class:`CompressedPosterior` from a header and its ``<density>_layer<l>_<name>``
    arrays.

    Raises
    ------
    ValueError
        If the arrays do not match the header's network sizes, or there are arrays of a
        density the header does not have.
    """
    expected = {f"{name}_layer{index}_{array}" for name in header.densities for index in range(2)
                for array in _LAYER_ARRAYS}
    unknown = sorted(set(arrays) - expected)
    if unknown:
        raise ValueError(f"arrays {unknown} belong to no density of the header")
    return _posterior(header, lambda name, part: _spline_layers(arrays, f"{name}_", part),
                      "weights")


def posterior_from_expressions(header: ModelHeader) -> CompressedPosterior:
    """Build a :class:`CompressedPosterior` from a header with formulas."""
    return _posterior(header, _expression_layers, "expressions")


def _read(path: Path, source: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The raw header and the arrays of a file; ValueError if it is not a file of ``source``."""
    try:
        if source == "expressions":
            raw, arrays = json.loads(path.read_text()), {}
        else:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            raw = json.loads(arrays.pop("header").tobytes().decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a gwtools KAN {source} file ({err})") from None
    if not isinstance(raw, dict) or raw.get("format") != _FORMATS[source]:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise ValueError(f"{path} is not a gwtools KAN {source} file (format={found!r})")
    if raw.get("format_version") not in _READABLE_VERSIONS:
        raise ValueError(
            f"{path} has format version {raw.get('format_version')}, this gwtools reads "
            f"versions {list(_READABLE_VERSIONS)}; re-run `gwtools compress`"
        )
    return raw, arrays


def _verify(path: Path, raw: dict, arrays: Mapping[str, np.ndarray], verify: bool) -> None:
    if raw["format_version"] == 1:
        logger.warning("%s was written without a content checksum (format version 1): it cannot "
                       "be verified; `gwtools restamp %s` adds one", path, path)
        return
    stored, computed = raw.get("checksum"), content_checksum(raw, arrays)
    if stored == computed:
        return
    if not verify:
        logger.warning("%s does not match its content checksum; loaded anyway (verify=False)", path)
        return
    problem = "has no content checksum" if stored is None else (
        f"does not match its content checksum (stored {str(stored)[:19]}..., computed "
        f"{computed[:19]}...): it was changed after it was written")
    raise ValueError(
        f"{path} {problem}. If the edit was deliberate, run `gwtools restamp {path}` (or load "
        "with verify=False, --no-verify on the command line); otherwise re-create it with "
        "`gwtools compress`"
    )


def _load_file(path: Path, source: str, verify: bool) -> tuple[CompressedPosterior, dict, dict]:
    raw, arrays = _read(path, source)
    _verify(path, raw, arrays, verify)
    body = {key: value for key, value in raw.items()
            if key not in ("format", "format_version", "checksum")}
    try:
        header = ModelHeader.from_dict(body)
        if source == "weights":
            model = posterior_from_weights(header, arrays)
        else:
            model = posterior_from_expressions(header)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: {err}") from None
    return model, raw, arrays


def _source_and_path(model: str | os.PathLike, source: str) -> tuple[str, Path]:
    text = str(model)
    if text.endswith(WEIGHTS_SUFFIX):
        source = "weights"
    elif text.endswith(EXPRESSIONS_SUFFIX):
        source = "expressions"
    if source not in _FORMATS:
        raise ValueError(f"source must be 'weights' or 'expressions', got {source!r}")
    weights_path, expressions_path = model_paths(model)
    path = weights_path if source == "weights" else expressions_path
    if not path.is_file():
        raise FileNotFoundError(
            f"no compressed-posterior {source} file at {path}; create it with `gwtools compress`"
        )
    return source, path


def load(model: str | os.PathLike, source: str = "weights", *,
         verify: bool = True) -> CompressedPosterior:
    """Load a compressed posterior.

    Parameters
    ----------
    model : str or path
        A model stem (``MODEL``), or the path of one of its files
        (``MODEL.weights.npz`` / ``MODEL.expr.json``; the file then decides the source).
    source : {"weights", "expressions"}
        Which file to read when ``model`` is a stem.
    verify : bool
        Check the content checksum (a mismatch raises).  False accepts a deliberately edited
        file, with a logged warning; the header is checked against the network either way.

    Raises
    ------
    FileNotFoundError
        If the file is missing.
    ValueError
        For an unknown ``source``, a file of another format or version, a checksum mismatch,
        or a header that disagrees with the network.
    """
    source, path = _source_and_path(model, source)
    return _load_file(path, source, verify)[0]


def _write_weights_file(path: str | os.PathLike, body: dict, arrays: Mapping[str, np.ndarray]) -> int:
    header = {"format": _FORMATS["weights"], "format_version": FORMAT_VERSION, **body}
    header["checksum"] = content_checksum(header, arrays)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        # The header as UTF-8 bytes: a numpy string array would spend 4 bytes a character.
        text = np.frombuffer(json.dumps(header, separators=(",", ":")).encode(), np.uint8)
        np.savez_compressed(handle, header=text, **arrays)
    return Path(path).stat().st_size


def _write_expressions_file(path: str | os.PathLike, body: dict) -> int:
    header = {"format": _FORMATS["expressions"], "format_version": FORMAT_VERSION, **body}
    header["checksum"] = content_checksum(header)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(header, separators=(",", ":")))
    return Path(path).stat().st_size


def write_weights(path: str | os.PathLike, header: ModelHeader,
                  arrays: Mapping[str, np.ndarray]) -> int:
    """Write a weights file atomically, with its content checksum; return its size in bytes.

    ``arrays`` holds ``<density>_layer<l>_<name>`` arrays (see
    :func:`gwtools.compression.pykan_adapter.spline_arrays`), checked against the header.
    """
    if any(part.layers is not None for part in header.densities.values()):
        raise ValueError("a weights header carries no formula layers; write them with "
                         "write_expressions")
    posterior_from_weights(header, arrays)
    return _write_weights_file(path, header.to_dict(), arrays)


def write_expressions(path: str | os.PathLike, header: ModelHeader) -> int:
    """Write an expressions file atomically, with its content checksum; return its size in
    bytes.  Every density of ``header`` needs its formula ``layers``."""
    posterior_from_expressions(header)
    return _write_expressions_file(path, header.to_dict())


def restamp(path: str | os.PathLike) -> str:
    """Accept a deliberately edited model file: check it, store a new content checksum.

    The header is checked against the network as on loading; the file is rewritten
    atomically in the current format version (a version 1 file gains its checksum).

    Returns
    -------
    str
        The new checksum.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`load`.
    """
    if not str(path).endswith((WEIGHTS_SUFFIX, EXPRESSIONS_SUFFIX)):
        raise ValueError(f"{path} is not a model file: give MODEL{WEIGHTS_SUFFIX} or "
                         f"MODEL{EXPRESSIONS_SUFFIX}")
    source, path = _source_and_path(path, "weights")
    _, raw, arrays = _load_file(path, source, verify=False)
    body = {key: value for key, value in raw.items()
            if key not in ("format", "format_version", "checksum")}
    if source == "weights":
        _write_weights_file(path, body, arrays)
    else:
        _write_expressions_file(path, body)
    return _read(path, source)[0]["checksum"]
