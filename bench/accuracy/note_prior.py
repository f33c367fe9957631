"""What a prior over the notes each instrument plays would add to held-out-source answers (issue 15).

An instrument's range is a physical fact (a violin plays nothing below G3, a contrabass little
above G4), and the pitch model names the note right on 99.7-100 % of notes from unseen
sources. Bayes' rule then gives p(instrument | sound, note) ∝ p(instrument | sound) ×
p(note | instrument)^w. This reads the held-out class probabilities that
`run.py --protocol loso --save-probabilities DIR` writes (one `<label>-<source>.npz` per
held-out source) and scores each source with the prior counted from the *other* sources'
notes (add-half smoothing over MIDI 0-127), for a few weights w. Nothing is trained.

    .venv/bin/python bench/accuracy/note_prior.py DIR [DIR ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

WEIGHTS = (0.0, 0.5, 1.0, 2.0)
SMOOTHING = 0.5
"""Counts added to every (instrument, MIDI) cell: a note outside the range seen is unlikely, not impossible."""


def note_given_instrument(instrument: np.ndarray, midi: np.ndarray, values: list[str]) -> np.ndarray:
    """(instruments, 128) p(MIDI | instrument) from labelled notes, add-`SMOOTHING` smoothed."""
    counts = np.full((len(values), 128), SMOOTHING)
    index = {v: i for i, v in enumerate(values)}
    for abbr, m in zip(instrument.tolist(), midi.tolist(), strict=True):
        counts[index[abbr], int(m)] += 1
    return counts / counts.sum(axis=1, keepdims=True)


def with_prior(proba: np.ndarray, midi: np.ndarray, prior: np.ndarray, weight: float) -> np.ndarray:
    """Class scores (log) of `proba` times p(note | class)^weight for each row's note."""
    return np.log(np.clip(proba, 1e-12, 1.0)) + weight * np.log(prior[:, np.asarray(midi, dtype=np.int64)].T)


def read_folder(folder: Path) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """label -> source -> arrays, from the `<label>-<source>.npz` files `run.py` writes."""
    runs: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for path in sorted(folder.glob("*-*.npz")):
        label, source = path.stem.rsplit("-", 1)
        with np.load(path) as z:
            runs.setdefault(label, {})[source] = {k: z[k] for k in z.files}
    return runs


def score(sets: dict[str, dict[str, np.ndarray]]) -> dict[float, dict[str, float]]:
    """Held-out accuracy per source and weight, each source's prior from the others' notes."""
    if len(sets) < 2:
        raise SystemExit(f"held-out answers of {len(sets)} source(s): the prior of each needs the others' notes")
    out: dict[float, dict[str, float]] = {}
    for weight in WEIGHTS:
        out[weight] = {}
        for held, z in sets.items():
            values = [str(v) for v in z["values"]]
            others = [o for name, o in sets.items() if name != held]
            prior = note_given_instrument(
                np.concatenate([o["instrument"] for o in others]), np.concatenate([o["midi"] for o in others]), values
            )
            proba = z["proba"]
            truth = np.array([values.index(str(v)) for v in z["instrument"]])
            predicted = with_prior(proba, z["midi"], prior, weight).argmax(axis=1)
            out[weight][held] = float(np.mean(predicted == truth))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    args = parser.parse_args()
    for folder in args.folders:
        for label, sets in read_folder(folder).items():
            for weight, per_source in score(sets).items():
                cells = " ".join(f"{name} {acc:.3f}" for name, acc in per_source.items())
                print(f"{label}  w={weight:g}  {cells}  mean {np.mean(list(per_source.values())):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
