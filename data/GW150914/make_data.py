"""Rebuild ``data/GW150914`` from the ``pyringgw==2.11.2`` source distribution.

The pyRing sdist (MIT licence) carries GWOSC strain around GW150914 as text, IMR remnant
samples and H1 autocovariance estimates.  This script converts them into the compact files
shipped beside it and prints their sha256 checksums for the README.

Usage (from the repository root)::

    cd /tmp && /work/main/.venv/bin/pip download --no-deps --no-binary pyringgw pyringgw==2.11.2
    .venv/bin/python data/GW150914/make_data.py /tmp/pyringgw-2.11.2.tar.gz

The argument may also be the unpacked ``pyringgw-2.11.2`` directory.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
import tarfile
from pathlib import Path

import h5py
import numpy as np

from gwtools.io.atomic import atomic_path
from gwtools.io.strain import from_array, write_gwosc_hdf5

HERE = Path(__file__).resolve().parent
SDIST_ROOT = "pyringgw-2.11.2"
STRAIN_DIR = "pyRing/data/Real_data/GW150914"
ACF_DIR = "scripts/Analysis_utils/ACFs_examples"
STRAIN_FILES = {
    "H1": "H-H1_GWOSC_4KHZ_R1-1126259447-32.txt",
    "L1": "L-L1_GWOSC_4KHZ_R1-1126259447-32.txt",
}
REMNANT_FILE = "GW150914_LAL_IMRPhenomP_O1_GWOSC_Mf_af_samples.txt"
ACF_FILES = [
    "ACF_H1_1126257415_4096_4.0_2048.0.txt",
    "ACF_H1_1126257415_4096_4.0_4096.0.txt",
]


def _reader(source: Path):
    """Return ``read(relative_path) -> bytes`` for an sdist tarball or its unpacked folder."""
    if source.is_dir():
        return lambda rel: (source / rel).read_bytes()
    archive = tarfile.open(source, "r:gz")  # noqa: SIM115 (open for the reader's lifetime)
    return lambda rel: archive.extractfile(f"{SDIST_ROOT}/{rel}").read()


def _parse_strain_text(raw: bytes) -> tuple[np.ndarray, int, int, int]:
    """Strain samples, GPS start, duration (s) and sample rate (Hz) from a GWOSC text file."""
    header = [line for line in raw.decode().splitlines()[:3] if line.startswith("#")]
    words = " ".join(header).split()
    sample_rate = int(words[words.index("samples") - 1])
    gps_start = int(words[words.index("GPS") + 1])
    duration = int(words[words.index("duration") + 1])
    data = np.loadtxt(io.BytesIO(raw), comments="#", dtype=np.float64)
    if data.size != duration * sample_rate:
        raise ValueError(f"header promises {duration * sample_rate} samples, found {data.size}")
    return data, gps_start, duration, sample_rate


def write_strain(read, detector: str, out_dir: Path) -> Path:
    """Convert one pyRing strain text file into a GWOSC-layout HDF5 file."""
    name = STRAIN_FILES[detector]
    data, gps_start, _, sample_rate = _parse_strain_text(read(f"{STRAIN_DIR}/{name}"))
    description = (
        f"GWOSC GW150914_R1 {detector} strain, {sample_rate} Hz, converted from pyringgw 2.11.2 "
        f"{STRAIN_DIR}/{name}"
    )
    return write_gwosc_hdf5(
        from_array(data, gps_start, sample_rate, detector),
        out_dir / name.replace(".txt", ".hdf5"),
        description=description,
    )


def write_remnant(read, out_dir: Path) -> Path:
    """Convert the IMR final-mass/final-spin samples (detector frame) into HDF5."""
    table = np.genfromtxt(io.BytesIO(read(f"{STRAIN_DIR}/{REMNANT_FILE}")), names=True)
    path = out_dir / "imr_remnant_samples.h5"
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for column, name, unit in (("Mf", "final_mass", "solar mass"), ("af", "final_spin", "")):
            # No modification times, so a rebuild reproduces the README checksum.
            dset = f.create_dataset(
                name,
                data=table[column],
                compression="gzip",
                compression_opts=9,
                shuffle=True,
                track_times=False,
            )
            dset.attrs["units"] = unit
        f.attrs["frame"] = "detector"
        f.attrs["waveform"] = "IMRPhenomP (LALInference, O1 GWOSC release)"
        f.attrs["source"] = f"pyringgw 2.11.2 {STRAIN_DIR}/{REMNANT_FILE}"
    return path


def write_acf(read, name: str, out_dir: Path) -> Path:
    """Copy one ACF table (lag s, autocovariance) gzip-compressed, values unchanged."""
    path = out_dir / f"{name}.gz"
    # mtime=0 keeps the archive bytes, and so the README checksum, reproducible.
    with atomic_path(path) as tmp, open(tmp, "wb") as raw, gzip.GzipFile(
        filename=name, mode="wb", fileobj=raw, compresslevel=9, mtime=0
    ) as gz:
        gz.write(read(f"{ACF_DIR}/{name}"))
    return path


def sha256(path: Path) -> str:
    """Hex sha256 digest of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sdist", type=Path, help="pyringgw-2.11.2.tar.gz or its unpacked folder")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: here)")
    args = parser.parse_args(argv)
    if not args.sdist.exists():
        parser.error(f"{args.sdist} does not exist; download it with pip first (see --help)")
    read = _reader(args.sdist)
    written = [write_strain(read, det, args.out) for det in STRAIN_FILES]
    written.append(write_remnant(read, args.out))
    written += [write_acf(read, name, args.out) for name in ACF_FILES]
    for path in written:
        sys.stdout.write(f"{sha256(path)}  {path.name}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
