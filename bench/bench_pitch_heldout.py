"""Benchmark: the pitch answer on fonts no fit heard, by the CNN alone and as the product shows it (issue 15).

The goal reads "pitch >= 99.5 % exact on held-out sources", but the pitch recipe fits no held-out models
(`leave_one_source_out: false`: it would double the nightly training), and `bench_tones.py --notes` scores the
champion on other players' renders of the fonts it trained on. This fits the pitch recipe once per seed
without each group of fonts the instrument recipe holds out as one (`heldout.heldout_sources` of
models/instrument.yaml: a font with its other player, fonts built on the same samples; `ml.heldout.fit`, as
the DAG's held-out fits), and scores every note of the group it never heard twice:

* `cnn`: the fit's top class;
* `product`: what `Predictor.predict_file` shows (the period checks of `serving.pitch_evidence`, the
  nearest-note rule) when the pitch network answers that fit's probabilities. The checks, the calibration and
  its "sure" threshold are those of the `--from-export` champion; only the network's probabilities are the
  held-out fit's.

`--data` is the folder of the snapshot's sources (`make demo`'s `.instropitch/data/sources-seed0-scale1`: one
folder per source, the snapshot's paths inside it).

    .venv/bin/python bench/bench_pitch_heldout.py --snapshot SNAPSHOT.npz \\
        --data .instropitch/data/sources-seed0-scale1 --from-export /tmp/export --seeds 42,1 --json /tmp/p.json

One fit and its product answers take ~35-100 s on 2 cores (four fits a seed on the demo's five fonts).
`--answers DIR` keeps each fit's probabilities there (`seed42-<group>.npz`) and reuses them for the same snapshot
and recipe, so a change to the product's checks is scored again in ~1.5 min without fitting.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_heldout_seeds import load_recipe  # noqa: E402  (a bench module beside this one)

ROOT = Path(__file__).resolve().parent.parent


class _FixedAnswers:
    """A stand-in for the pitch network that answers the probabilities it was last given (one file at a time)."""

    answers_foreignness = False

    def __init__(self) -> None:
        self.row = np.zeros(0)

    def answer(self, x: np.ndarray) -> tuple[np.ndarray, None]:
        return np.tile(self.row, (len(x), 1)).astype(np.float32), None


@contextmanager
def answering(predictor: Any) -> Iterator[_FixedAnswers]:
    """The predictor with its pitch network answering whatever the yielded stand-in is given."""
    fixed, kept = _FixedAnswers(), predictor.pitch_model.net
    predictor.pitch_model.net = fixed
    try:
        yield fixed
    finally:
        predictor.pitch_model.net = kept


def heldout_groups(snapshot: Any) -> list[str]:
    """The fits the instrument recipe makes on this snapshot's sources (each blind to one font or group)."""
    from instropitch.ml.heldout import heldout_sources
    from instropitch.modelspec import load_spec

    return heldout_sources(load_spec(ROOT / "models" / "instrument.yaml"), snapshot.sources, epochs=1)


def product_midis(predictor: Any, files: list[Path], proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The MIDI note the product shows for each file, and whether it says "sure", given the network's `proba`."""
    midis, sure = np.zeros(len(files), dtype=int), np.zeros(len(files), dtype=bool)
    with answering(predictor) as fixed:
        for i, path in enumerate(files):
            fixed.row = proba[i]
            shown = predictor.predict_file(str(path))
            if shown.error:
                raise SystemExit(f"{path}: {shown.error}")
            midis[i], sure[i] = shown.midi, bool(shown.pitch_sure)
    return midis, sure


def heldout_answers(
    spec: Any, snapshot: Any, group: str, cache: Path | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The snapshot rows of `group`, their true classes and what the recipe fitted without it answered: from `cache` (a
    `seed<N>-<group>.npz` file) when it holds this snapshot's and recipe's answers, else fitted (and kept there)."""
    from instropitch.ml import heldout

    kept = None if cache is None else cache / f"seed{spec.training.seed}-{group}.npz"
    recipe = dataclasses.replace(spec, source=None)  # where the YAML was read from is no part of the recipe
    fit = f"{snapshot.digest} {recipe!r}"  # answers of another snapshot or recipe (`--set`) must not be reused
    if kept is not None and kept.exists():
        with np.load(kept) as saved:
            if "fit" in saved.files and str(saved["fit"]) == fit:
                return saved["rows"], saved["labels"], saved["proba"]
    answers = heldout.fit(spec, snapshot, group, spec.training.epochs)
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        np.savez(kept, rows=answers.rows, labels=answers.labels, proba=answers.proba, fit=np.array(fit))
    return answers.rows, answers.labels, answers.proba


def seed_scores(
    spec: Any, snapshot: Any, data: Path, predictor: Any, groups: list[str], cache: Path | None = None
) -> dict[str, Any]:
    """Per held-out group: notes, CNN right, product right, product sure and sure-right, and the product's misses."""
    from instropitch.ml.snapshot import class_layout

    values = np.asarray(class_layout("midi")[0])
    scores: dict[str, Any] = {}
    for group in groups:
        started = time.perf_counter()
        rows, labels, proba = heldout_answers(spec, snapshot, group, cache)
        truth = values[labels]
        files = [data / str(snapshot.source[r]) / str(snapshot.paths[r]) for r in rows]
        shown, sure = product_midis(predictor, files, proba)
        cnn = values[proba.argmax(axis=1)]
        scores[group] = {
            "n": len(truth),
            "cnn_right": int(np.sum(cnn == truth)),
            "product_right": int(np.sum(shown == truth)),
            "product_sure": int(np.sum(sure)),
            "product_sure_right": int(np.sum(sure & (shown == truth))),
            "misses": [
                {
                    "file": str(files[i].relative_to(data)),
                    "midi": int(truth[i]),
                    "cnn": int(cnn[i]),
                    "shown": int(shown[i]),
                    "sure": bool(sure[i]),
                }
                for i in np.flatnonzero((shown != truth) | (cnn != truth))
            ],
            "seconds": round(time.perf_counter() - started, 1),
        }
        s = scores[group]
        print(
            f"  without {group}: CNN {s['cnn_right']}/{s['n']}, product {s['product_right']}/{s['n']} "
            f"(sure {s['product_sure']}, {s['product_sure'] - s['product_sure_right']} of them wrong), "
            f"{s['seconds']} s",
            flush=True,
        )
    return scores


def summary(scores: dict[str, Any]) -> dict[str, float]:
    """Accuracy by notes over every group of one seed, by the CNN and through the product."""
    n = sum(s["n"] for s in scores.values())
    return {
        "cnn": sum(s["cnn_right"] for s in scores.values()) / n,
        "product": sum(s["product_right"] for s in scores.values()) / n,
        "sure_wrong": sum(s["product_sure"] - s["product_sure_right"] for s in scores.values()),
        "n": n,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--snapshot", type=Path, required=True, help="a training snapshot (snapshot.npz)")
    parser.add_argument("--data", type=Path, required=True, help="the snapshot's audio: one folder per source")
    parser.add_argument("--from-export", type=Path, required=True, help="the champions whose checks are used")
    parser.add_argument("--spec", type=Path, default=ROOT / "models" / "pitch.yaml")
    parser.add_argument("--seeds", default="42,1")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--answers", type=Path, help="a folder keeping each fit's probabilities (reused when there)")
    args = parser.parse_args(argv)

    from instropitch.ml.snapshot import Snapshot
    from instropitch.serving.predictor import Predictor

    snapshot = Snapshot.load(args.snapshot)
    predictor = Predictor.from_export(args.from_export)
    groups = heldout_groups(snapshot)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "load_average": os.getloadavg(),
        "settings": args.settings,
        "groups": groups,
        "seeds": {},
    }
    for seed in [int(s) for s in args.seeds.split(",")]:
        print(f"seed {seed}", flush=True)
        scores = seed_scores(
            load_recipe(args.spec, args.settings, seed), snapshot, args.data, predictor, groups, args.answers
        )
        report["seeds"][seed] = {"groups": scores, **summary(scores)}
        s = report["seeds"][seed]
        print(
            f"seed {seed}: CNN {s['cnn']:.2%}, product {s['product']:.2%} of {s['n']}, sure and wrong {s['sure_wrong']}"
        )
    seeds = report["seeds"].values()
    report["mean"] = {k: float(np.mean([s[k] for s in seeds])) for k in ("cnn", "product")}
    print(f"mean over seeds: CNN {report['mean']['cnn']:.2%}, product {report['mean']['product']:.2%}")
    report["load_average_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
