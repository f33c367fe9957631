"""The `instropitch` command line.

Parsers are built here and cheap to import; each command imports its module only when it
runs, so `instropitch --help` and quick commands start fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


def _cmd_synth(args: argparse.Namespace) -> int:
    from instropitch import synth

    summary = synth.render_dataset(
        out_dir=Path(args.out),
        soundfont=Path(args.soundfont) if args.soundfont else None,
        seed=args.seed,
        scale=args.scale,
        instruments=args.instruments.split(",") if args.instruments else None,
        max_pitches=args.max_pitches,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(summary)
    return 0


def _cmd_dataset_download(args: argparse.Namespace) -> int:
    from instropitch import download

    root = download.download_tinysol(
        Path(args.to),
        url=args.url,
        md5=args.md5,
        size=args.size,
        progress=not args.quiet,
    )
    print(f"TinySOL is ready in {root}")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    import mlflow

    from instropitch import registry

    if args.tracking_uri:
        mlflow.set_tracking_uri(args.tracking_uri)
    table = registry.list_runs(experiment=args.experiment, max_results=args.max_results)
    if table.empty:
        print(f"no training runs in experiment {args.experiment!r} at {mlflow.get_tracking_uri()}")
        return 0
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instropitch",
        description="Which instrument plays this note, and which note is it? (TinySOL, Airflow, MLflow)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="render a synthetic TinySOL-layout dataset from a SoundFont")
    p.add_argument("--out", required=True, help="folder to write (TinySOL layout + TinySOL_metadata.csv)")
    p.add_argument("--soundfont", help="an SF2 file (default: TimGM6mb.sf2 shipped with pretty_midi)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed renders the same files")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the full ~2,913-note manifest to render")
    p.add_argument("--instruments", help="comma-separated abbreviations, e.g. Vn,Fl (default: all 14)")
    p.add_argument("--max-pitches", type=int, help="at most this many pitches per instrument (small test sets)")
    p.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("dataset", help="the real TinySOL dataset")
    dsub = p.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    d = dsub.add_parser("download", help="download, verify and extract TinySOL.tar.gz from Zenodo")
    d.add_argument("--to", required=True, help="folder to download and extract into")
    d.add_argument("--url", default=None, help="archive URL (default: Zenodo record 3685367)")
    d.add_argument("--md5", default=None, help="expected md5 (default: TinySOL v6.0's)")
    d.add_argument("--size", type=int, default=None, help="expected size in bytes (default: TinySOL v6.0's)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_cmd_dataset_download)

    p = sub.add_parser("runs", help="recent training runs side by side (test accuracy, version, champion)")
    p.add_argument("--experiment", default="instropitch", help="MLflow experiment (default: instropitch)")
    p.add_argument("--max-results", type=int, default=20, help="at most this many runs, newest first")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    p.set_defaults(func=_cmd_runs)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except CliError as exc:
        print(f"instropitch: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("instropitch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
