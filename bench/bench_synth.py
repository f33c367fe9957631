"""Benchmark: render the full synthetic TinySOL (~2,913 notes) and report the throughput.

    .venv/bin/python bench/bench_synth.py --out /tmp/synth-bench --workers 0
    .venv/bin/python bench/bench_synth.py --out /tmp/synth-bench --soundfont a.sf2 --soundfont b=b.sf2 \
        --conditions dry,room,hall,mic,distant,player

Prints files, wall seconds, files/s and MB written (and one line per source with several
fonts), then the player's own time for one note of each font (a violin G4 held 4 s at velocity
100, the median of ten renders, no file written: the hot path every rendered note takes; 17-18 ms
on the idle 2-core machine of 2026-12, ~32 ms beside other work). The output folder is left in
place (delete it yourself; the full set is about 1.4 GB per source).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from instropitch import synth
from instropitch.synth import player
from instropitch.synth.sf2 import SoundFont


def render_note_ms(path: Path, repeats: int = 10) -> float:
    """Median wall milliseconds of the player rendering one violin G4 (4 s, velocity 100) from `path`."""
    font = SoundFont.load(path)
    player.render_note(font, 40, 67, 100, 4.0)  # the first render builds the font's sample cache
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        player.render_note(font, 40, 67, 100, 4.0)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to render into")
    parser.add_argument("--workers", type=int, default=0, help="processes (0: one per core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full set")
    parser.add_argument("--soundfont", action="append", help="[NAME=]an SF2 file, repeatable (default: TimGM6mb.sf2)")
    parser.add_argument("--conditions", default="dry", help="comma list of render-condition presets")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    summary = synth.render_dataset(
        Path(args.out),
        soundfont=args.soundfont or None,
        seed=args.seed,
        scale=args.scale,
        workers=args.workers,
        progress=not args.quiet,
        conditions=args.conditions,
    )
    for source in summary.sources:
        print(f"source    {source.source}: {source}")
    workers = args.workers or os.cpu_count()
    print(f"machine   {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"workers   {workers}")
    print(f"conditions {args.conditions}")
    print(f"files     {summary.files}")
    print(f"seconds   {summary.seconds:.1f}")
    print(f"files/s   {summary.files / summary.seconds:.1f}")
    print(f"MB        {summary.bytes / 1e6:.1f}")
    print(f"audio     {summary.audio_seconds / 3600:.2f} h")
    for name, path in synth.resolve_sources(args.soundfont or None).items():
        print(f"player    {name}: {render_note_ms(path):.1f} ms a note (violin G4, 4 s), load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
