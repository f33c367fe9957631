"""`make demo`: the whole pipeline on one machine with embedded services and no Docker.

Renders the synthetic TinySOL (once), starts PostgreSQL and the S3 server, uploads the
dataset, runs `instropitch_etl` then `instropitch_training` with real Airflow
(`airflow dags test`; a line per finished task and per training epoch as they come, the
full log in a file), and prints what landed where.

The synthetic set is several sources, one per General MIDI font the package registries gave
(`synth.fonts`: TimGM6mb and Merlin from PyPI, FluidR3Mono_GM, MuseScore_General_Lite and the
FreePats patches from npm), each played by the project's SF2 player and by TinySoundFont (`synth.tsf`, from PyPI),
each font and player rendering its share of the 2,913 notes under a mix of dry and recording
conditions: several timbres for the cost of one set, so that the instrument model cannot
learn one sample library, and the training DAG can hold sources out to measure (and
calibrate on) sound it never heard (the demo runs one of those fits, `DEMO_HELDOUT`, each of one
network, `DEMO_MEMBERS`, to stay within 10 minutes on 2 cores; the nightly run runs them all, as the
recipes say). Each source is uploaded under `NAME/`; `extra_sources` (`--source NAME=DIR`) adds
TinySOL-layout folders, and the ETL run loads them all (DAG param `sources`).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from instropitch.data import objectstore
from instropitch.devstack import local_airflow, stack

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from instropitch.synth import RenderPlan

BUCKET = objectstore.DEFAULT_BUCKET
PREFIX = objectstore.DEFAULT_PREFIX
DEFAULT_SOURCE_NAME = PREFIX.rstrip("/")
"""The source the synthetic set (or `stack up --data DIR`) is loaded as: `TinySOL`, under `TinySOL/`."""


DEMO_HELDOUT = ("timgm6mb",)
"""The one held-out fit of the demo, of the recipe's four: within 10 minutes on 2 cores, the confidence is still
calibrated on a font the fit never heard. TimGM6mb ships with pretty_midi, so it is always rendered; its fit alone
gives a temperature near the four fits' (bench/RESULTS.md, "The demo's one held-out fit"). The nightly run
(`airflow dags trigger`, the schedule) runs all four, on workers when there are several."""

DEMO_MEMBERS = 1
"""Networks per instrument fit in the demo: one, where the recipe averages two (`training.members`). Two add ~3.5
minutes to the demo (the held-out fit and the champion, both on its critical path: 9 min 58 s measured against its
10-minute goal); the nightly run fits the recipe's two (bench/RESULTS.md, "Two members by default")."""


@dataclass
class DemoOptions:
    home: Path
    scale: float = 1.0
    seed: int = 0
    epochs: int | None = None
    train: bool = True
    keep_running: bool = False
    extra_sources: dict[str, Path] = field(default_factory=dict)
    """source name -> TinySOL-layout folder, uploaded under `NAME/` next to the synthetic `TinySOL/`."""
    heldout_sources: tuple[str, ...] = DEMO_HELDOUT
    """The training run's held-out fits: only those blind to these sources (DAG param `heldout_sources`);
    () runs every fit the recipe plans, as the nightly run does."""
    members: int | None = DEMO_MEMBERS
    """Networks averaged per fit (DAG param `members`); None: each recipe's, as the nightly run does."""


def training_conf(options: DemoOptions, sources: Sequence[str]) -> tuple[dict[str, object], str]:
    """The `instropitch_training` params of the demo's run on these combined-table `sources`, and a line
    to print when a held-out source it was asked for has no notes there (a small `--scale` may deal
    TimGM6mb none): those are dropped, and with none left every fit runs."""
    conf: dict[str, object] = {} if options.epochs is None else {"epochs": options.epochs}
    if options.members is not None:
        conf["members"] = options.members
    wanted = list(options.heldout_sources)
    kept = [name for name in wanted if name in sources]
    if kept:
        conf["heldout_sources"] = kept
    if kept == wanted:
        return conf, ""
    missing = ", ".join(name for name in wanted if name not in kept)
    rest = f"only the fits blind to {', '.join(kept)}" if kept else "every held-out fit"
    return conf, f"demo: no notes of {missing} in the combined table (sources: {', '.join(sources)}); {rest} will run"


DATASET_CONDITIONS = "dry,mixed"
"""Render conditions of the synthetic set: half the notes dry, half through a random room, microphone,
distance and player (`synth.conditions`), as users' recordings are."""


def dataset_dir(home: Path, seed: int, scale: float) -> Path:
    """The folder of the synthetic set's sources (one TinySOL-layout subfolder per font)."""
    return home / "data" / f"sources-seed{seed}-scale{scale:g}"


def dataset_sources(folder: Path) -> dict[str, Path]:
    """{source name: folder} of a dataset folder: a TinySOL-layout folder is the source `TinySOL`;
    a folder of such folders (what `ensure_dataset` renders) is one source per subfolder."""
    from instropitch.tinysol import METADATA_FILENAME

    if (folder / METADATA_FILENAME).is_file():
        return {DEFAULT_SOURCE_NAME: folder}
    subfolders = {sub.name: sub for sub in sorted(folder.iterdir()) if (sub / METADATA_FILENAME).is_file()}
    if not subfolders:
        raise FileNotFoundError(f"{folder}: neither {METADATA_FILENAME} nor subfolders holding one")
    return subfolders


def ensure_dataset(folder: Path, seed: int, scale: float) -> dict[str, Path]:
    """Render the synthetic sources into `folder` unless a complete render is there; {name: folder}.

    Every default font is played by every player installed (`synth.available_players`: the
    project's own and TinySoundFont), and the 2,913 notes are shared among all of them.
    """
    from instropitch import synth
    from instropitch.synth import fonts

    wanted = fonts.default_fonts()
    players = synth.available_players()
    plan = synth.plan_render(wanted, seed, scale, share=True, players=players)
    if _holds_plan(folder, plan):
        print(f"dataset: reusing {folder} ({', '.join(plan.sources)})")
        return {name: folder / name for name in plan.sources}
    for line in fonts.missing_fonts():
        print(f"dataset: {line}; rendering without it")
    if len(players) < len(synth.PLAYERS):
        print("dataset: TinySoundFont is not installed (make venv installs it); rendering with one player")
    if folder.exists():  # the notes were shared differently (other fonts or rules): none of its files may stay
        held = ", ".join(sorted(p.name for p in folder.iterdir() if p.is_dir())) or "no source"
        print(f"dataset: {folder} holds another render ({held}); replacing it")
        shutil.rmtree(folder)
    print(
        f"dataset: rendering synthetic TinySOL (scale {scale:g}) from {', '.join(wanted)} "
        f"played by {', '.join(players)} into {folder}"
    )
    out = folder if len(plan.sources) > 1 else folder / next(iter(plan.sources))  # one source: into its folder
    summary = synth.render_dataset(
        out, soundfont=wanted, seed=seed, scale=scale, conditions=DATASET_CONDITIONS, share=True, players=players
    )
    print(f"dataset: {summary}")
    return {name: folder / name for name in plan.sources}


def _holds_plan(folder: Path, plan: RenderPlan) -> bool:
    """Whether `folder` holds, per source, exactly the notes that `render_dataset` would deal it now."""
    from instropitch.tinysol import METADATA_FILENAME, parse_metadata

    if not all((folder / name / METADATA_FILENAME).is_file() for name in plan.sources):
        return False
    for name in plan.sources:
        try:
            rows = parse_metadata(folder / name / METADATA_FILENAME).rows
        except (OSError, ValueError):
            return False
        if {r.path for r in rows} != {n.path for n in plan.planned[name]}:
            return False
    return True


def seed_bucket(services: stack.Services, folder: Path, bucket: str = BUCKET, prefix: str = PREFIX) -> int:
    """Upload a TinySOL-layout folder to the embedded S3 server (unchanged objects are skipped)."""
    client = objectstore.make_client(
        services.s3_endpoint, aws_access_key_id=stack.S3_ACCESS_KEY, aws_secret_access_key=stack.S3_SECRET_KEY
    )
    return objectstore.upload_folder(client, bucket, prefix, folder)


def parse_source_folders(values: Sequence[str]) -> dict[str, Path]:
    """`NAME=DIR` arguments -> {name: folder}; names follow the DAG's rules (unique, `tinysol.SOURCE_NAME`).

    The name `TinySOL` is taken by the default source (`--data DIR` or the synthetic set).
    """
    from instropitch.pipeline.etl import SourceError
    from instropitch.tinysol import SOURCE_NAME

    folders: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        name, folder = name.strip(), folder.strip()
        if not sep or not name or not folder:
            raise SourceError(f"--source {value!r}: expected NAME=DIR (e.g. fluid=.instropitch/data/fluid)")
        if not SOURCE_NAME.fullmatch(name):
            raise SourceError(
                f"--source {value!r}: the name must start with a letter or digit and hold only letters, digits, '.', '_' and '-'"
            )
        if name in folders or name == DEFAULT_SOURCE_NAME:
            raise SourceError(f"--source {value!r}: the source name {name!r} is already taken")
        path = Path(folder)
        if not path.is_dir():
            raise SourceError(f"--source {value!r}: {folder} is not a folder")
        folders[name] = path
    return folders


def seed_sources(
    services: stack.Services, folders: Mapping[str, Path], bucket: str = BUCKET
) -> tuple[list[str], dict[str, int]]:
    """Upload each {name: folder} under `NAME/` (the default name under `TinySOL/`).

    Returns the `sources` value for `instropitch_etl` (one `NAME/` entry per folder, in the
    given order) and the number of files uploaded per source.
    """
    sources: list[str] = []
    uploaded: dict[str, int] = {}
    for name, folder in folders.items():
        prefix = f"{name}/"
        uploaded[name] = seed_bucket(services, Path(folder), bucket, prefix)
        sources.append(prefix)
    return sources, uploaded


def sources_conf(sources: Sequence[str]) -> str:
    """The `-c` JSON to trigger `instropitch_etl` with these sources."""
    return json.dumps({"sources": list(sources)})


def _engine(services: stack.Services) -> Engine:
    from instropitch.data import warehouse

    return warehouse.engine_for(services.pg_socket_dir, 5432, services.pg_user, None, services.pg_database)


def _summary_etl(services: stack.Services) -> str:
    from sqlalchemy import text

    from instropitch.data import warehouse

    engine = _engine(services)
    try:
        counts = warehouse.table_counts(engine)
        with engine.connect() as conn:
            stages = dict(conn.execute(text("SELECT stage, count(*) FROM etl_rejects GROUP BY stage")).all())
        per_source = warehouse.warehouse_sources(engine)
    finally:
        engine.dispose()
    lines = [f"  {table:<32} {n:>6} rows" for table, n in counts.items()]
    lines += [f"  source {name:<25} {f['combined_rows']:>6} rows combined" for name, f in per_source.items()]
    lines.append(f"  rejects by stage: {stages or 'none'}")
    return "\n".join(lines)


def _combined_sources(services: stack.Services) -> list[str]:
    """The sources with rows in the combined table: what the training run's snapshot will hold."""
    from instropitch.data import warehouse

    engine = _engine(services)
    try:
        return sorted(name for name, rows in warehouse.warehouse_sources(engine).items() if rows["combined_rows"])
    finally:
        engine.dispose()


def _summary_training(services: stack.Services) -> str:
    from instropitch.ml import registry

    lines = []
    for name in ("pitch", "instrument"):
        info = registry.champion_info(name)
        if info is None:
            lines.append(f"  instropitch-{name}: no champion")
            continue
        accuracy = "n/a" if info.test_accuracy is None else f"{info.test_accuracy:.4f}"
        if info.heldout_accuracy is not None:  # on the sources it was not trained on: what a user's recording is
            accuracy += f", held-out-source accuracy {info.heldout_accuracy:.4f} ({info.heldout_fits})"
        lines.append(f"  {info.model_name} v{info.version} is champion: test accuracy {accuracy} ({info.model_uri})")
    return "\n".join(lines)


def _show(line: str) -> None:
    print(line, flush=True)


def run(options: DemoOptions) -> int:
    """Run the demo; return a process exit status."""
    import os

    home = options.home.resolve()
    started = time.perf_counter()
    folders = ensure_dataset(dataset_dir(home, options.seed, options.scale), options.seed, options.scale)
    services = stack.up(home)
    print(f"stack: PostgreSQL on {services.pg_socket_dir}, S3 API on {services.s3_endpoint}")
    try:
        taken = sorted(set(folders) & set(options.extra_sources))
        if taken:
            print(f"demo: --source {', '.join(taken)}: the name is taken by a synthetic source; choose another")
            return 2
        sources, uploaded = seed_sources(services, {**folders, **options.extra_sources})
        for prefix, (name, count) in zip(sources, uploaded.items(), strict=True):
            print(f"s3: {count} objects uploaded to s3://{BUCKET}/{prefix} (source {name})")
        env = local_airflow.environment(services)
        os.environ.update({k: v for k, v in env.items() if k.startswith(("MLFLOW_", "INSTROPITCH_"))})
        local_airflow.migrate(env)

        print("airflow: running instropitch_etl", flush=True)
        etl = local_airflow.dags_test("instropitch_etl", env, {"bucket": BUCKET, "sources": sources}, progress=_show)
        print(
            f"airflow: instropitch_etl {'succeeded' if etl.ok else 'FAILED'} in {etl.seconds:.0f} s (log {etl.log_path})"
        )
        if not etl.ok:
            print(etl.tail())
            return 1
        print(_summary_etl(services))

        if options.train:
            conf, note = training_conf(options, _combined_sources(services))
            if note:
                print(note)
            print("airflow: running instropitch_training", flush=True)
            training = local_airflow.dags_test("instropitch_training", env, conf, progress=_show)
            print(
                f"airflow: instropitch_training {'succeeded' if training.ok else 'FAILED'} "
                f"in {training.seconds:.0f} s (log {training.log_path})"
            )
            if not training.ok:
                print(training.tail())
                return 1
            print(_summary_training(services))
        print(f"done in {time.perf_counter() - started:.0f} s")
        print(f"MLflow UI: .venv/bin/mlflow ui --backend-store-uri {services.mlflow_uri}  (then http://127.0.0.1:5000)")
        return 0
    finally:
        if not options.keep_running:
            stack.down(home)
