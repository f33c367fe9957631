"""Accuracy on notes a model never saw: labelled folders in the TinySOL layout, scored in detail.

A *labelled folder* is any TinySOL-layout tree with its `TinySOL_metadata.csv` (a synthetic
render, the real TinySOL, a user's own recordings). `load_labelled_folder` turns one into
arrays of spectrograms and labels, computed by the same `features.compute_features` as the
ETL and cached next to nothing in the folder (the cache lives where the caller says).
`pitch_report` / `instrument_report` give the figures the accuracy benchmark prints:
exact note+octave, note-only and octave-only accuracy, accuracy per register, accuracy and
macro F1 per instrument. Nothing here knows about Airflow or MLflow.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instropitch import tinysol
from instropitch.audio import features as feats

REGISTERS: dict[str, tuple[int, int]] = {"low": (0, 47), "mid": (48, 71), "high": (72, 127)}
"""MIDI ranges of the registers reported apart: below C3, C3..B4, C5 and above."""


@dataclass(frozen=True)
class LabelledSet:
    """Spectrograms and labels of every readable note of one folder (rows sorted by path)."""

    name: str
    paths: np.ndarray  # (N,) str, relative to the folder
    midi: np.ndarray  # (N,) int64
    instrument: np.ndarray  # (N,) str, TinySOL abbreviation
    fold: np.ndarray  # (N,) int64
    pitch: np.ndarray  # (N, F, B) float32
    instrument_spec: np.ndarray  # (N, F2, B2) float32
    rejected: tuple[tuple[str, str], ...] = ()
    preset: str = "default"

    def __len__(self) -> int:
        return len(self.paths)

    def inputs(self, which: str) -> np.ndarray:
        """What a model with input `which` reads (`audio.inputs`; a note-relative view from the labelled notes)."""
        from instropitch.audio.inputs import model_input

        return model_input(which, self.pitch, self.instrument_spec, self.midi, feats.get_preset(self.preset))

    def band_frequencies(self, which: str) -> np.ndarray:
        """Each row's band frequencies under input `which` (`audio.inputs.band_frequencies`), for `lowpass` training."""
        from instropitch.audio.inputs import band_frequencies

        return band_frequencies(which, feats.get_preset(self.preset), self.midi)


def _features_of(job: tuple[str, str, str]) -> tuple[str, np.ndarray | None, np.ndarray | None, str]:
    folder, path, preset = job
    try:
        f = feats.compute_features(Path(folder) / path, feats.get_preset(preset), name=path)
    except (OSError, ValueError) as exc:  # AudioError is a ValueError
        return path, None, None, str(exc)
    return path, f.pitch, f.instrument, ""


def load_labelled_folder(
    folder: str | Path,
    preset: str = "default",
    *,
    name: str | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 0,
) -> LabelledSet:
    """Read the folder's metadata and compute both spectrograms of every note listed in it.

    Notes whose file is missing or unreadable are left out and listed in `rejected`
    (path, reason). With `cache_dir`, the arrays are kept in an .npz keyed by the folder,
    the metadata file's content and the preset's digest, so a second call is instant.
    """
    folder = Path(folder)
    csv_path = folder / tinysol.METADATA_FILENAME
    if not csv_path.is_file():
        raise FileNotFoundError(f"{folder}: no {tinysol.METADATA_FILENAME} (not a TinySOL-layout folder)")
    csv_bytes = csv_path.read_bytes()
    config = feats.get_preset(preset)
    key = hashlib.blake2b(
        b"\0".join([str(folder.resolve()).encode(), csv_bytes, config.digest().encode()]), digest_size=10
    ).hexdigest()
    cache = Path(cache_dir) / f"{folder.name}-{preset}-{key}.npz" if cache_dir else None
    set_name = name or folder.name
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            rejected = tuple((str(p), str(r)) for p, r in zip(z["rejected_paths"], z["rejected_reasons"], strict=True))
            return LabelledSet(
                set_name,
                z["paths"],
                z["midi"],
                z["instrument"],
                z["fold"],
                z["pitch"],
                z["instrument_spec"],
                rejected,
                preset,
            )

    parsed = tinysol.parse_metadata(csv_bytes)
    rows = sorted(parsed.rows, key=lambda r: r.path)
    jobs = [(str(folder), r.path, preset) for r in rows]
    workers = workers or os.cpu_count() or 1
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_features_of, jobs, chunksize=32))
    else:
        results = [_features_of(j) for j in jobs]
    keep = [i for i, (_, p, _, _) in enumerate(results) if p is not None]
    rejected = tuple((results[i][0], results[i][3]) for i in range(len(results)) if results[i][1] is None)
    out = LabelledSet(
        set_name,
        np.array([rows[i].path for i in keep]),
        np.array([rows[i].pitch_id for i in keep], dtype=np.int64),
        np.array([rows[i].instrument_abbr for i in keep]),
        np.array([rows[i].fold for i in keep], dtype=np.int64),
        np.stack([results[i][1] for i in keep]).astype(np.float32),
        np.stack([results[i][2] for i in keep]).astype(np.float32),
        rejected,
        preset,
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            paths=out.paths,
            midi=out.midi,
            instrument=out.instrument,
            fold=out.fold,
            pitch=out.pitch,
            instrument_spec=out.instrument_spec,
            rejected_paths=np.array([p for p, _ in rejected], dtype=str),
            rejected_reasons=np.array([r for _, r in rejected], dtype=str),
        )
        os.replace(tmp, cache)
    return out


# ------------------------------------------------------------------------ reports


def pitch_report(true_midi: np.ndarray, pred_midi: np.ndarray) -> dict[str, float]:
    """Exact (note and octave), note-only (pitch class) and octave-only accuracy, and exact per register."""
    true_midi = np.asarray(true_midi, dtype=np.int64)
    pred_midi = np.asarray(pred_midi, dtype=np.int64)
    if len(true_midi) == 0:
        return {"n": 0.0}
    report = {
        "n": float(len(true_midi)),
        "exact": float(np.mean(true_midi == pred_midi)),
        "note": float(np.mean(true_midi % 12 == pred_midi % 12)),
        "octave": float(np.mean(true_midi // 12 == pred_midi // 12)),
    }
    for register, (low, high) in REGISTERS.items():
        inside = (true_midi >= low) & (true_midi <= high)
        if inside.any():
            report[f"exact_{register}"] = float(np.mean(true_midi[inside] == pred_midi[inside]))
    return report


def instrument_report(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Accuracy, macro F1 over the instruments present, and accuracy per instrument (`acc_<abbr>`)."""
    from sklearn.metrics import f1_score

    true = np.asarray(true).astype(str)
    pred = np.asarray(pred).astype(str)
    if len(true) == 0:
        return {"n": 0.0}
    present = sorted(set(true.tolist()))
    report = {
        "n": float(len(true)),
        "accuracy": float(np.mean(true == pred)),
        "macro_f1": float(f1_score(true, pred, labels=present, average="macro", zero_division=0)),
    }
    for abbr in tinysol.INSTRUMENT_ABBRS:
        mine = true == abbr
        if mine.any():
            report[f"acc_{abbr}"] = float(np.mean(pred[mine] == abbr))
    return report


__all__ = ["REGISTERS", "LabelledSet", "instrument_report", "load_labelled_folder", "pitch_report"]
