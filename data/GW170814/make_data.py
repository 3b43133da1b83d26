"""Rebuild ``data/GW170814`` from the ``pyringgw==2.11.2`` source distribution.

The pyRing sdist (MIT licence) carries 32 s of public GWOSC strain around GW170814 from the
three detectors H1, L1 and V1 as GWOSC text files.  This script reads each one with the
project's own GWOSC text reader (header: detector, sample rate, GPS start) and writes it in
GWOSC HDF5 layout beside this script, then prints the sha256 checksums for the README.

Usage (from the repository root)::

    cd /tmp && /work/main/.venv/bin/pip download --no-deps --no-binary pyringgw pyringgw==2.11.2
    .venv/bin/python data/GW170814/make_data.py /tmp/pyringgw-2.11.2.tar.gz

The argument may also be the unpacked ``pyringgw-2.11.2`` directory.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from gwtools.io.posteriors import file_sha256
from gwtools.io.strain import read_text, write_gwosc_hdf5

HERE = Path(__file__).resolve().parent
SDIST_ROOT = "pyringgw-2.11.2"
STRAIN_DIR = "pyRing/data/Real_data/GW170814"
STRAIN_FILES = {
    "H1": "H-H1_GWOSC_4KHZ_R1-1186741846-32.txt",
    "L1": "L-L1_GWOSC_4KHZ_R1-1186741846-32.txt",
    "V1": "V-V1_GWOSC_4KHZ_R1-1186741846-32.txt",
}


def extract_text(source: Path, name: str, scratch: Path) -> Path:
    """Copy one strain text file out of the sdist (tarball or folder) into ``scratch``."""
    member = f"{STRAIN_DIR}/{name}"
    target = scratch / name
    if source.is_dir():
        shutil.copyfile(source / member, target)
        return target
    with tarfile.open(source, "r:gz") as archive, archive.extractfile(
        f"{SDIST_ROOT}/{member}"
    ) as raw, open(target, "wb") as out:
        shutil.copyfileobj(raw, out)
    return target


def write_strain(text_path: Path, detector: str, out_dir: Path) -> Path:
    """Convert one GWOSC text file into a GWOSC-layout HDF5 file, values unchanged."""
    series = read_text(text_path, detector)
    description = (
        f"GWOSC GW170814_R1 {detector} strain, {series.sample_rate:.0f} Hz, converted from "
        f"pyringgw 2.11.2 {STRAIN_DIR}/{text_path.name}"
    )
    return write_gwosc_hdf5(
        series, out_dir / text_path.name.replace(".txt", ".hdf5"), description=description
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sdist", type=Path, help="pyringgw-2.11.2.tar.gz or its unpacked folder")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: here)")
    args = parser.parse_args(argv)
    if not args.sdist.exists():
        parser.error(f"{args.sdist} does not exist; download it with pip first (see --help)")
    with tempfile.TemporaryDirectory() as scratch:
        written = [
            write_strain(extract_text(args.sdist, name, Path(scratch)), detector, args.out)
            for detector, name in STRAIN_FILES.items()
        ]
    for path in written:
        sys.stdout.write(f"{file_sha256(path)}  {path.name}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
