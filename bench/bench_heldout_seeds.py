"""Benchmark: a recipe's held-out-source accuracy over several seeds, the figure that chooses recipes (issue 15).

One seed of the demo's held-out fits moves by about ±3 points from another, which is as much
as most recipe changes; a default should change only on the mean of three seeds. This runs,
on one training snapshot, the fits the training DAG runs (`ml.heldout.fit`: each blind to a
source or a group of them, as `heldout.heldout_sources` chooses) once per seed, and reports
per source and seed the accuracy on the notes the fit never saw, the mean and the worst
source, and the calibration error after the calibration the product fits (`calibration.calibrate`:
a temperature that grows with each note's foreignness, then the top answer's map) fitted on the other fits' answers
(`calibration.cross_fitted` over `heldout.fit_labels`, the same honest figure the training run
logs; until session 38 over sources, so a font's other player was in its calibration), also per fit, beside the
error of that calibration without the foreignness (until session 45 that was one temperature, the figure this
benchmark reported before session 29: its "ECE" figures of sessions 13-28 are that one). It also reports how often the candidates of a "not sure" answer
held the right class, and how many there were (`CrossFitted.candidates`: each fit's
candidate floor fitted on the other fits' answers; the product promises 90 %), how many notes would
be shown as sure and how often rightly (`CrossFitted.sure`), how often the answer is of
the right family (nearly half of the held-out errors are one bowed string taken for another), and the accuracy
with every class weighed alike (`class_mean`; TinySOL's accordion is a quarter of the notes; since session 49).
Fits kept since session 46 also keep their answers on the test rows of the fonts they trained on: the calibration's
temperature is then fitted on those too, as the product's is (`calibration.Familiar`), and the report adds
their ECE with and without them (`familiar_ece`, `familiar_ece_heldout_only`) and the held-out ECE without
them (`ece_heldout_only`).

    .venv/bin/python bench/bench_heldout_seeds.py --snapshot SNAPSHOT.npz --seeds 42,1,2 \\
        --set training.balance=sources_classes --work /tmp/heldout-sc --json /tmp/heldout-sc.json

Held-out fonts are played by the training's own players, so this figure cannot see what a
recipe does to a player it never trained on (PCEN won here and lost on FluidSynth renders,
bench/RESULTS.md). `--far FAR=FONT` (repeatable) names a source of the snapshot that is an
outside render of FONT (e.g. FluidSynth's, frozen into a snapshot with `instropitch demo
--source FAR=DIR --epochs 0`): no fit trains on it, the fit blind to FONT answers it, and it
is reported apart ("far"), with its ECE after the calibration fitted on all the held-out fonts'
answers:

    .venv/bin/python bench/bench_heldout_seeds.py --snapshot SNAPSHOT.npz --work /tmp/far \\
        --far fs_timgm6mb=timgm6mb --far fs_merlin=merlin --far fs_mslite=mslite

`--snapshot` is a training snapshot (`snapshot/snapshot.npz` of a training run's parent);
`--set KEY=VALUE` (repeatable) changes one setting of the recipe (`--spec`, default
models/instrument.yaml) by its dotted YAML path, the value read as YAML; the changed recipe
is validated as the DAG would. Each fit's answers are kept in `--work` (one `.npz` per seed
and held-out source) and reused when run again, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml


def with_settings(data: dict[str, Any], settings: list[str]) -> dict[str, Any]:
    """The recipe document with each `KEY.PATH=VALUE` set (the value parsed as YAML)."""
    for setting in settings:
        key, sep, raw = setting.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {setting!r}: expected KEY=VALUE, e.g. training.balance=classes")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SystemExit(f"--set {setting!r}: {part!r} is not a section of the recipe")
        node[leaf] = yaml.safe_load(raw)
    return data


def load_recipe(path: Path, settings: list[str], seed: int) -> Any:
    """`path`'s recipe with `settings` and `training.seed` applied, validated by `parse_spec`."""
    from instropitch.modelspec import SpecError, parse_spec

    data = with_settings(yaml.safe_load(path.read_text(encoding="utf-8")), [*settings, f"training.seed={seed}"])
    try:
        return parse_spec(data, where=f"{path} with {settings}", source=path)
    except SpecError as exc:
        raise SystemExit(str(exc)) from None


def answers_for(
    spec: Any, snapshot: Any, source: str, work: Path, recipe: str, never_train: list[str]
) -> dict[str, np.ndarray]:
    """The held-out fit's answers on `source`: from `work` if a previous run of the same `recipe`
    on the same snapshot kept them, else fitted now."""
    from instropitch.ml import heldout

    path = work / f"seed{spec.training.seed}" / f"{source}.npz"
    if path.is_file():
        with np.load(path) as kept:
            if str(kept["recipe"]) != recipe or str(kept["data_digest"]) != snapshot.digest:
                raise SystemExit(f"{path}: kept from another recipe or snapshot ({kept['recipe']}); use another --work")
            return dict(kept)
    answers = heldout.fit(spec, snapshot, source, spec.training.epochs, never_train)
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = {
        "rows": answers.rows,
        "proba": answers.proba,
        "labels": answers.labels,
        "fit_time_s": np.float64(answers.fit_time_s),
        "load": np.asarray(os.getloadavg()),
        "recipe": np.str_(recipe),
        "data_digest": np.str_(snapshot.digest),
        **({} if answers.foreignness is None else {"foreignness": answers.foreignness}),
        **heldout.familiar_arrays(answers.familiar),
    }
    np.savez(path, **kept)
    print(f"seed {spec.training.seed} without {source}: {answers.fit_time_s:.0f} s, load {os.getloadavg()[0]:.1f}")
    return kept


def with_far(groups: list[str], far: dict[str, str]) -> list[str]:
    """Each held-out group with the outside renders (`far`: {far source: font}) of its fonts added."""
    from instropitch.ml.heldout import GROUP_SEPARATOR, held_out_members

    added = {g: [f for f, font in sorted(far.items()) if font in held_out_members(g)] for g in groups}
    lost = sorted(set(far) - {f for fs in added.values() for f in fs})
    if lost:
        raise SystemExit(f"--far {', '.join(lost)}: its font is held out by no fit ({', '.join(groups)})")
    return [GROUP_SEPARATOR.join([g, *added[g]]) for g in groups]


def seed_scores(spec: Any, snapshot: Any, work: Path, recipe: str, far: dict[str, str]) -> dict[str, Any]:
    """Per source: held-out accuracy; with their mean, worst, and cross-source calibrated ECE;
    and the same for the `far` sources, scored by the fit blind to their font."""
    from instropitch.ml import calibration, fitting, heldout
    from instropitch.tinysol import family_indices

    rows = fitting.model_rows(spec, snapshot)
    missing = sorted(set(far) - set(rows.source_names))
    if missing:
        raise SystemExit(f"--far {', '.join(missing)}: not a source of the snapshot ({', '.join(rows.source_names)})")
    names = [n for n in rows.source_names if n not in far]
    groups = with_far(heldout.heldout_sources(spec, names, spec.training.epochs), far)
    if not groups:
        raise SystemExit("the recipe holds out nothing on this snapshot (one source, 0 epochs, or LOSO off)")
    kept = {group: answers_for(spec, snapshot, group, work, recipe, list(far)) for group in groups}
    by_fit = {g: kept_answers(k) for g, k in kept.items()}
    answers = heldout.per_source(by_fit, rows.sources)
    far_answers = {name: answers.pop(name) for name in far}
    scores = accuracies(spec, rows, answers)
    everything, sources = heldout.pooled(answers)
    fits = heldout.fit_labels(sources, groups)  # each fit's answers calibrated by the other fits'
    y = rows.y[everything.rows]
    # the product's calibration: the temperature also on the fits' familiar answers, when they were kept
    fitted_on = {
        "foreignness": everything.foreignness,
        "familiar": heldout.familiar_answers(by_fit, rows.y),
        "families": family_indices(rows.class_names) if spec.label == "instrument" else None,
    }
    built = calibration.cross_fitted(everything.proba, y, fits, **fitted_on)
    # the same answers as calibrated before the familiar ones (sessions 29-45), and without the foreignness
    before = calibration.cross_fitted(everything.proba, y, fits, **fitted_on, fitted_on_familiar=False)
    no_foreignness = calibration.cross_fitted(everything.proba, y, fits, families=fitted_on["families"])
    hold, size = built.candidates()
    sure, sure_right = built.sure()
    scaled = built.scaled
    result = {
        **scores,
        "ece_raw": calibration.expected_calibration_error(everything.proba, y),
        "ece_calibrated": built.ece(),
        "ece_heldout_only": before.ece(),
        "ece_without_foreignness": no_foreignness.ece(),
        **familiar_ece(built, before, fitted_on["familiar"]),
        "ece_by_fit": {  # where the calibration transfers worst (FreePats' fit, sessions 43-44)
            fit: calibration.expected_calibration_error(scaled[fits == fit], y[fits == fit])
            for fit in sorted(set(fits))
        },
        "sure": sure,  # answered as sure, each fit by the threshold fitted on the others
        "sure_right": sure_right,
        "candidates_hold": hold,
        "candidates": size,
        "top3_hold": float(np.mean(top_ranks(everything.proba, y) < 3)),  # what "not sure" listed before
        "family_accuracy": family_accuracy(spec, rows.class_names, everything.proba.argmax(axis=1), y),
        "class_mean": class_mean_accuracy(everything.proba.argmax(axis=1), y),
        "fit_s": sum(float(k["fit_time_s"]) for k in kept.values()),
    }
    if far_answers:
        far_scores = accuracies(spec, rows, far_answers)
        outside, _ = heldout.pooled(far_answers)
        fitted = calibration.calibrate(everything.proba, y, calibration.HELDOUT_SOURCES, **fitted_on)
        one = calibration.apply_temperature(outside.proba, calibration.fit_temperature(everything.proba, y))
        result["far"] = far_scores["per_source"]
        result["far_mean"] = far_scores["mean"]
        result["far_ece_calibrated"] = calibration.expected_calibration_error(
            fitted.apply(outside.proba, outside.foreignness), rows.y[outside.rows]
        )
        result["far_ece_one_temperature"] = calibration.expected_calibration_error(one, rows.y[outside.rows])
        result["far_candidates"] = {name: candidates_on(fitted, a, rows.y[a.rows]) for name, a in far_answers.items()}
    return result


def kept_answers(kept: dict[str, np.ndarray]) -> Any:
    """A kept fit's answers as `heldout.Answers`, with its familiar answers when kept (since session 46)."""
    from instropitch.ml.heldout import Answers

    familiar = None
    if "familiar_rows" in kept:
        familiar = Answers(kept["familiar_rows"], kept["familiar_proba"], kept["familiar_foreignness"])
    return Answers(kept["rows"], kept["proba"], kept.get("foreignness"), familiar)


def familiar_ece(built: Any, before: Any, familiar: Any) -> dict:
    """ECE of each fit's answers on the fonts it trained on (test rows), shown by the calibration fitted on the
    other fits': fitted with those answers (`built`, the product) and without (`before`, sessions 29-45). Empty when
    not kept."""
    if familiar is None or built.familiar_ece() is None:
        return {}
    return {
        "familiar_accuracy": float(np.mean(familiar.proba.argmax(axis=1) == familiar.y)),
        "familiar_ece": built.familiar_ece(),
        "familiar_ece_heldout_only": before.familiar_ece(),
    }


def family_accuracy(spec: Any, class_names: list[str], predicted: np.ndarray, y: np.ndarray) -> float | None:
    """How often the answer is at least of the right TinySOL family (bowed strings, brass, winds, keyboards):
    nearly half of the held-out errors are one bowed string taken for another (RESULTS.md, session 44).
    None for a label that is not the instrument."""
    from instropitch.tinysol import family_indices

    if spec.label != "instrument":
        return None
    family = np.array(family_indices(class_names))
    return float(np.mean(family[np.asarray(predicted)] == family[np.asarray(y)]))


def class_mean_accuracy(predicted: np.ndarray, y: np.ndarray) -> float:
    """The held-out notes' accuracy with every class weighed alike (the mean of the per-class recalls): TinySOL's
    accordion is 24 % of the notes, a user's instruments hardly so (RESULTS.md, "The class prior")."""
    predicted, y = np.asarray(predicted), np.asarray(y)
    return float(np.mean([np.mean(predicted[y == c] == c) for c in np.unique(y)]))


def top_ranks(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Where the right class stands among each answer's classes (0: the answer itself)."""
    return np.argmax(np.argsort(-proba, axis=1, kind="stable") == np.asarray(y)[:, None], axis=1)


def candidates_on(fitted: Any, answers: Any, y: np.ndarray) -> dict[str, float]:
    """How often the candidates `fitted` shows hold the right class, and how many there are, on `answers`."""
    from instropitch.ml import calibration

    scaled = fitted.apply(answers.proba, answers.foreignness)
    return dict(zip(("hold", "size"), calibration.candidates_held(scaled, y, fitted.candidate_floor), strict=True))


def accuracies(spec: Any, rows: Any, answers: dict[str, Any]) -> dict[str, Any]:
    """Per source, as the training run logs them (`heldout.source_metrics`); their mean and minimum."""
    from instropitch.ml import heldout, reports

    scores = heldout.source_metrics(
        {name: reports.evaluation_metrics(spec, rows.y[a.rows], a.proba.argmax(axis=1)) for name, a in answers.items()},
        {},
    )
    return {
        "per_source": {name: scores[f"source.{name}.heldout_accuracy"] for name in answers},
        "mean": scores["heldout_accuracy"],
        "worst": scores["heldout_min_accuracy"],
    }


def _mean_over_seeds(by_seed: dict[int, dict[str, Any]], key: str) -> dict[str, float]:
    """{source: mean over the seeds} of the per-source scores under `key`."""
    names = sorted({name for scores in by_seed.values() for name in scores[key]})
    return {name: float(np.mean([s[key][name] for s in by_seed.values()])) for name in names}


def familiar_line(scores: dict[str, Any]) -> str:
    """The familiar answers' ECE, with the temperature fitted on them and without (when the fits kept them)."""
    if "familiar_ece" not in scores:
        return ""
    return (
        f"; familiar notes ECE {scores['familiar_ece']:.3f} (held-out answers only:"
        f" {scores['familiar_ece_heldout_only']:.3f}, held-out ECE then {scores['ece_heldout_only']:.3f})"
    )


def summary(by_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Over the seeds: each source's mean accuracy, their mean, the worst source, and each seed's mean
    (and the same of the far sources, with --far)."""
    per_source = _mean_over_seeds(by_seed, "per_source")
    total = {
        "per_source": per_source,
        "mean": float(np.mean(list(per_source.values()))),
        "worst": min(per_source.values()),
        "seed_means": {seed: s["mean"] for seed, s in by_seed.items()},
        "ece_calibrated": float(np.mean([s["ece_calibrated"] for s in by_seed.values()])),
        "ece_without_foreignness": float(np.mean([s["ece_without_foreignness"] for s in by_seed.values()])),
        **{
            key: float(np.mean([s[key] for s in by_seed.values()]))
            for key in ("ece_heldout_only", "familiar_ece", "familiar_ece_heldout_only")
            if all(key in s for s in by_seed.values())
        },
        "candidates_hold": float(np.mean([s["candidates_hold"] for s in by_seed.values()])),
        "sure": float(np.mean([s.get("sure", 0.0) for s in by_seed.values()])),
        "family_accuracy": (
            float(np.mean([s["family_accuracy"] for s in by_seed.values()]))
            if all(s.get("family_accuracy") is not None for s in by_seed.values())
            else None
        ),
        "sure_right": float(np.mean([s.get("sure_right", 0.0) for s in by_seed.values()])),
        "candidates": float(np.mean([s["candidates"] for s in by_seed.values()])),
        "top3_hold": float(np.mean([s["top3_hold"] for s in by_seed.values()])),
        "class_mean": float(np.mean([s["class_mean"] for s in by_seed.values()])),
    }
    if all("far" in s for s in by_seed.values()):
        far = _mean_over_seeds(by_seed, "far")
        total["far"] = far
        total["far_mean"] = float(np.mean(list(far.values())))
        total["far_worst"] = min(far.values())
        for key in ("far_ece_calibrated", "far_ece_one_temperature"):
            total[key] = float(np.mean([s[key] for s in by_seed.values()]))
        total["far_candidates"] = {
            name: {
                k: float(np.mean([s["far_candidates"][name][k] for s in by_seed.values()])) for k in ("hold", "size")
            }
            for name in far
        }
    return total


def far_line(scores: dict[str, Any]) -> str:
    """The outside renders' part of a report line ("" without --far)."""
    if "far" not in scores:
        return ""
    cells = ", ".join(f"{name} {100 * acc:.1f}" for name, acc in scores["far"].items())
    held = ", ".join(
        f"{name} {100 * c['hold']:.0f} % / {c['size']:.1f}" for name, c in scores["far_candidates"].items()
    )
    return (
        f"\n  far: {cells}; mean {100 * scores['far_mean']:.1f} %, ECE {scores['far_ece_calibrated']:.3f}"
        f" (one temperature {scores['far_ece_one_temperature']:.3f})"
        f"\n  far, candidates holding the right class / how many: {held}"
    )


def candidates_line(scores: dict[str, Any]) -> str:
    """How often a "not sure" answer's candidates held the right class, and how many there were."""
    return (
        f"; candidates hold it {100 * scores['candidates_hold']:.1f} % ({scores['candidates']:.2f} a note;"
        f" the top three {100 * scores['top3_hold']:.1f} %)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshot", type=Path, required=True)
    parser.add_argument("--spec", type=Path, default=Path("models/instrument.yaml"))
    parser.add_argument("--seeds", default="42,1,2", help="comma list (default 42,1,2)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--far",
        action="append",
        default=[],
        metavar="FAR=FONT",
        help="a source of the snapshot that is an outside render of FONT: never trained on, scored by the fit blind to FONT",
    )
    parser.add_argument("--work", type=Path, required=True, help="keeps each fit's answers; reused when run again")
    parser.add_argument("--json", type=Path, help="write the scores here too")
    args = parser.parse_args()

    from instropitch.ml.snapshot import Snapshot

    far = dict(pair.split("=", 1) for pair in args.far if "=" in pair)
    if len(far) != len(args.far):
        parser.error("--far wants FAR=FONT, e.g. fs_merlin=merlin")
    snapshot = Snapshot.load(args.snapshot)
    started = time.perf_counter()
    by_seed = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        recipe = json.dumps([str(args.spec), *args.settings, far])
        by_seed[seed] = seed_scores(load_recipe(args.spec, args.settings, seed), snapshot, args.work, recipe, far)
        scores = by_seed[seed]
        cells = ", ".join(f"{name} {100 * acc:.1f}" for name, acc in scores["per_source"].items())
        print(
            f"seed {seed}: {cells}; mean {100 * scores['mean']:.1f}, worst {100 * scores['worst']:.1f} %,"
            f" ECE calibrated across fits {scores['ece_calibrated']:.3f}"
            f" (without foreignness {scores['ece_without_foreignness']:.3f})"
            + candidates_line(scores)
            + far_line(scores)
        )
        print(
            "  ECE by fit: "
            + ", ".join(f"{fit} {ece:.3f}" for fit, ece in scores["ece_by_fit"].items())
            + f"; sure {100 * scores['sure']:.1f} % of notes, {100 * scores['sure_right']:.1f} % of them right"
            + (
                f"; the right family {100 * scores['family_accuracy']:.1f} %"
                if scores["family_accuracy"] is not None
                else ""
            )
            + familiar_line(scores),
        )
    total = summary(by_seed)
    cells = ", ".join(f"{name} {100 * acc:.1f}" for name, acc in total["per_source"].items())
    print(f"{len(by_seed)} seeds ({' '.join(args.settings) or 'the recipe as it is'}): {cells}")
    print(
        f"  mean {100 * total['mean']:.1f} %, worst source {100 * total['worst']:.1f} %,"
        f" every class alike {100 * total['class_mean']:.1f} %,"
        f" ECE {total['ece_calibrated']:.3f} (without foreignness {total['ece_without_foreignness']:.3f});"
        f" {time.perf_counter() - started:.0f} s, load {os.getloadavg()}"
        + candidates_line(total)
        + far_line(total)
        + familiar_line(total)
    )
    if args.json:
        report = {
            "settings": args.settings,
            "far": far,
            "snapshot": str(args.snapshot),
            "seeds": by_seed,
            "summary": total,
        }
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
