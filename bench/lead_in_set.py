"""A labelled set as a person records it: room noise before and after each note (issue 15).

Every render and sample library starts its file at the note's onset; a user presses "record",
waits, plays, and stops a little later. This copies a TinySOL-layout folder with a lead-in and a
tail of room noise around each note (lengths drawn per note, seeded), so `bench_calibration.py
--data` can measure what that silence costs the models:

    .venv/bin/python bench/lead_in_set.py --src /tmp/tonejs --out /tmp/tonejs-lead-in
    .venv/bin/python bench/bench_calibration.py --data tonejs=/tmp/tonejs --data lead-in=/tmp/tonejs-lead-in

Each note is scaled to peak at -6 dBFS; the room is white noise at `--room-db` dBFS.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import soundfile

from instropitch import tinysol


def with_room(
    y: np.ndarray, rate: int, lead: float, tail: float, room_db: float, rng: np.random.Generator
) -> np.ndarray:
    """`y` at -6 dBFS peak with `lead` s of room before it and `tail` s after, the room under all of it."""
    y = y * (0.5 / max(float(np.max(np.abs(y))), 1e-9))
    out = np.concatenate([np.zeros(round(lead * rate)), y, np.zeros(round(tail * rate))])
    return out + rng.standard_normal(len(out)) * 10 ** (room_db / 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="a TinySOL-layout folder with its metadata CSV")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lead", type=float, nargs=2, default=(0.2, 1.5), metavar=("MIN", "MAX"), help="seconds")
    parser.add_argument("--tail", type=float, nargs=2, default=(0.0, 2.0), metavar=("MIN", "MAX"), help="seconds")
    parser.add_argument("--room-db", type=float, default=-70.0, help="level of the room noise, dBFS")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    rows = tinysol.parse_metadata(args.src / tinysol.METADATA_FILENAME).rows
    for row in rows:
        y, rate = soundfile.read(args.src / row.path, dtype="float64", always_2d=True)
        lead, tail = rng.uniform(*args.lead), rng.uniform(*args.tail)
        out = args.out / row.path
        out.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(out, with_room(y.mean(axis=1), rate, lead, tail, args.room_db, rng), rate, subtype="PCM_16")
    shutil.copy(args.src / tinysol.METADATA_FILENAME, args.out / tinysol.METADATA_FILENAME)
    print(
        f"{len(rows)} notes in {args.out}: lead-in {args.lead[0]}-{args.lead[1]} s, tail {args.tail[0]}-{args.tail[1]} s"
    )


if __name__ == "__main__":
    main()
