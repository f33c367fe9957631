"""A labelled set as a phone or a voice codec passes it on: resampled to a low rate (issue 15).

A voice memo sent through a messenger, a call, or a file exported at 8 or 16 kHz has nothing
above half its sample rate; no training note lacks its upper bands. This copies a
TinySOL-layout folder with every note resampled (soxr, very high quality) to `--rate`, so
`bench_calibration.py --data` measures what the missing bands cost, and `instropitch demo
--epochs 0 --source NAME=DIR` can freeze it into a snapshot as a far set of
`bench_heldout_seeds.py --far`:

    .venv/bin/python bench/narrow_band_set.py --src /tmp/fs_merlin --out /tmp/nb_merlin --rate 8000
    .venv/bin/python bench/bench_calibration.py --data full=/tmp/fs_merlin --data 8k=/tmp/nb_merlin
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import soundfile
import soxr

from instropitch import tinysol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="a TinySOL-layout folder with its metadata CSV")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rate", type=int, default=8000, help="sample rate of the copy, Hz (default 8000)")
    args = parser.parse_args()

    rows = tinysol.parse_metadata(args.src / tinysol.METADATA_FILENAME).rows
    for row in rows:
        y, rate = soundfile.read(args.src / row.path, dtype="float32", always_2d=True)
        out = args.out / row.path
        out.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(out, soxr.resample(y.mean(axis=1), rate, args.rate, quality="VHQ"), args.rate, subtype="PCM_16")
    shutil.copy(args.src / tinysol.METADATA_FILENAME, args.out / tinysol.METADATA_FILENAME)
    print(f"{len(rows)} notes in {args.out} at {args.rate} Hz")


if __name__ == "__main__":
    main()
