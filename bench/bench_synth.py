"""Benchmark: render the full synthetic TinySOL (~2,913 notes) and report the throughput.

    .venv/bin/python bench/bench_synth.py --out /tmp/synth-bench --workers 0
    .venv/bin/python bench/bench_synth.py --out /tmp/synth-bench --soundfont a.sf2 --soundfont b=b.sf2 \
        --conditions dry,room,hall,mic,distant,player

Prints files, wall seconds, files/s and MB written (and one line per source with several
fonts). The output folder is left in place (delete it yourself; the full set is about
1.4 GB per source).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from instropitch import synth


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
