"""A frozen, split copy of the training data: the one thing every train and promote task shares.

The `snapshot` task reads the warehouse once, fixes the train/test split and stores the
result as a compressed `.npz` MLflow artifact. Every model trained in that DAG run, and
the promotion that compares them with the champion, reads the same file, so "test
accuracy" always means the same notes. Rows are sorted by (source, path) before
splitting, so the order the database returns them in never changes the split or the digest.

Every row carries its `source` (the dataset it came from: a SoundFont render, the real
TinySOL, a user's folder), so training can hold a whole source out. Sources share relative
paths, so (source, path) is the key, not the path.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from instropitch.tinysol import INSTRUMENT_ABBRS, midi_to_pitch, pitch_to_midi, resampled_from, take_key

if TYPE_CHECKING:
    from instropitch.modelspec import ModelSpec

MIDI_CLASSES: tuple[int, ...] = tuple(range(21, 110))
"""MIDI 21..109 (A0..C#8): the fixed output layout of every pitch model, whatever the data covers.

The 88 piano keys plus C#8, because TinySOL's accordion reaches MIDI 109 (see
`tinysol.INSTRUMENTS`); a piano-only layout would have to drop those notes."""

SNAPSHOT_ARTIFACT_DIR = "snapshot"
SNAPSHOT_FILENAME = "snapshot.npz"
SNAPSHOT_ARTIFACT = f"{SNAPSHOT_ARTIFACT_DIR}/{SNAPSHOT_FILENAME}"
"""Where `log_snapshot` puts the file inside its MLflow run."""

_FORMAT_VERSION = 2
"""2 adds `source`; files of version 1 (no source) still load, every row in `DEFAULT_SOURCE`."""
_READABLE_VERSIONS = (1, 2)

DEFAULT_SOURCE = "default"
"""The source of every row when a caller gives none (and of snapshots saved before sources existed)."""


@dataclass(frozen=True, eq=False)
class Snapshot:
    """N notes with both spectrograms, their labels and a fixed test split, sorted by (source, path).

    `stratify` records which rule the split could use (see `create_snapshot`).
    `feature_preset` names the features preset the spectrograms were computed with ("" if unknown).
    `source` (N,) names the dataset of each row; a Snapshot built without it gets
    `DEFAULT_SOURCE` for every row.
    """

    paths: np.ndarray  # (N,) str
    midi: np.ndarray  # (N,) int64
    instrument: np.ndarray  # (N,) str, TinySOL abbreviation
    fold: np.ndarray  # (N,) int64
    pitch: np.ndarray  # (N, F, B) float32
    instrument_spec: np.ndarray  # (N, F2, B2) float32
    is_test: np.ndarray  # (N,) bool
    seed: int
    test_size: float
    digest: str
    feature_digest: str = ""
    feature_preset: str = ""
    stratify: str = "instrument+midi"
    source: np.ndarray | None = None  # (N,) str; None -> every row DEFAULT_SOURCE

    def __post_init__(self) -> None:
        if self.source is None:
            object.__setattr__(self, "source", np.full(len(self.paths), DEFAULT_SOURCE))
        elif len(self.source) != len(self.paths):
            raise ValueError(f"source has {len(self.source)} rows, paths has {len(self.paths)}")

    @property
    def sources(self) -> list[str]:
        """The distinct source names, sorted."""
        return sorted({str(s) for s in self.source})

    def source_counts(self) -> dict[str, int]:
        """Rows per source, by source name."""
        return dict(sorted(Counter(str(s) for s in self.source).items()))

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def n_test(self) -> int:
        return int(self.is_test.sum())

    def inputs_for(self, spec: ModelSpec | str) -> np.ndarray:
        """What a model reads (by `spec.input`, `audio.inputs`): `pitch`, `instrument_spec`, or
        the instrument spectrogram beside the pitch one re-centred on each row's labelled note."""
        from instropitch.audio import inputs
        from instropitch.audio.features import get_preset

        which = spec if isinstance(spec, str) else spec.input
        if not inputs.needs_note(which):
            inputs.spectrograms_read(which)  # an unknown input is an error naming the known ones
            return self.pitch if which == "pitch" else self.instrument_spec
        if not self.feature_preset:
            raise ValueError(f"the {which!r} input needs the snapshot's feature preset; this snapshot names none")
        return inputs.model_input(which, self.pitch, self.instrument_spec, self.midi, get_preset(self.feature_preset))

    def band_frequencies_for(self, spec: ModelSpec | str) -> np.ndarray:
        """Centre frequency in Hz of each band of what a model reads: (1, bands), or one row per note."""
        from instropitch.audio import inputs
        from instropitch.audio.features import get_preset

        which = spec if isinstance(spec, str) else spec.input
        if not self.feature_preset:
            raise ValueError("band frequencies need the snapshot's feature preset; this snapshot names none")
        return inputs.band_frequencies(which, get_preset(self.feature_preset), self.midi)

    def labels_for(self, spec: ModelSpec | str) -> tuple[np.ndarray, list[str]]:
        """(class index per row, class names) for `spec.label`.

        midi: 89 classes for MIDI 21..109 (`MIDI_CLASSES`), named by pitch ("A0" .. "C#8").
        instrument: the 14 TinySOL abbreviations in `tinysol.INSTRUMENTS` order.
        """
        label = spec if isinstance(spec, str) else spec.label
        values, names = class_layout(label)
        index = {v: i for i, v in enumerate(values)}
        column = self.midi if label == "midi" else self.instrument
        column_values = [int(v) for v in column] if label == "midi" else [str(v) for v in column]
        return np.array([index[v] for v in column_values], dtype=np.int64), names

    def summary(self) -> dict[str, object]:
        """Small facts for logs and MLflow params."""
        return {
            "n_notes": len(self),
            "n_test": self.n_test,
            "seed": self.seed,
            "test_size": self.test_size,
            "digest": self.digest,
            "feature_digest": self.feature_digest,
            "feature_preset": self.feature_preset,
            "stratify": self.stratify,
            "sources": self.source_counts(),
            "pitch_shape": list(self.pitch.shape[1:]),
            "instrument_shape": list(self.instrument_spec.shape[1:]),
        }

    # --------------------------------------------------------------- file format

    def save(self, path: str | Path) -> Path:
        """Write a compressed `.npz` holding plain arrays only (loadable without pickle)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.savez_compressed(f, **self._arrays())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Snapshot:
        """Read a file written by `save`; refuses pickled content and checks the digest."""
        with np.load(Path(path), allow_pickle=False) as data:
            version = int(data["format_version"])
            if version not in _READABLE_VERSIONS:
                raise ValueError(f"{path}: snapshot format {version}, this code reads {list(_READABLE_VERSIONS)}")
            has_source = version >= 2
            snap = cls(
                paths=data["paths"],
                midi=data["midi"],
                instrument=data["instrument"],
                fold=data["fold"],
                pitch=data["pitch"],
                instrument_spec=data["instrument_spec"],
                is_test=data["is_test"],
                seed=int(data["seed"]),
                test_size=float(data["test_size"]),
                digest=str(data["digest"]),
                feature_digest=str(data["feature_digest"]),
                feature_preset=str(data["feature_preset"]),
                stratify=str(data["stratify"]),
                source=data["source"] if has_source else None,
            )
        columns = (snap.paths, snap.midi, snap.instrument, snap.fold, snap.pitch, snap.instrument_spec, snap.is_test)
        # version 1 digests predate the source column
        actual = _digest(snap.source, *columns) if has_source else _digest(*columns)
        if actual != snap.digest:
            raise ValueError(f"{path}: content digest {actual} does not match the stored {snap.digest}")
        return snap

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "format_version": np.array(_FORMAT_VERSION),
            "paths": self.paths,
            "midi": self.midi,
            "instrument": self.instrument,
            "fold": self.fold,
            "pitch": self.pitch,
            "instrument_spec": self.instrument_spec,
            "is_test": self.is_test,
            "seed": np.array(self.seed),
            "test_size": np.array(self.test_size),
            "digest": np.array(self.digest),
            "feature_digest": np.array(self.feature_digest),
            "feature_preset": np.array(self.feature_preset),
            "stratify": np.array(self.stratify),
            "source": np.asarray(self.source).astype(str),
        }


def class_layout(label: str) -> tuple[list[int] | list[str], list[str]]:
    """(label values, display names) in output order for `label` "midi" or "instrument"."""
    if label == "midi":
        return list(MIDI_CLASSES), [midi_to_pitch(m) for m in MIDI_CLASSES]
    if label == "instrument":
        return list(INSTRUMENT_ABBRS), list(INSTRUMENT_ABBRS)
    raise ValueError(f"unknown label {label!r}; expected 'midi' or 'instrument'")


def class_values(label: str, names: list[str]) -> list[int] | list[str]:
    """Display names back to label values (pitch names -> MIDI numbers)."""
    return [pitch_to_midi(n) for n in names] if label == "midi" else list(names)


# ---------------------------------------------------------------------- creation


def _digest(*arrays: np.ndarray) -> str:
    """sha256 over dtype, shape and bytes of each array (strings as UTF-8 lines); 16 hex chars."""
    h = hashlib.sha256()
    for a in arrays:
        if a.dtype.kind in "UO":
            h.update(b"str")
            h.update("\n".join(str(v) for v in a).encode("utf-8"))
        else:
            a = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def strata(instrument: np.ndarray, midi: np.ndarray, source: np.ndarray | None = None) -> np.ndarray:
    """The stratum of each row for a split that keeps instrument *and* pitch proportions.

    Rule: a row's stratum is its (instrument, MIDI) pair when that pair has >= 2 rows
    (stratify needs two members to put one on each side). Rows of rarer pairs fall back
    to their instrument (`Vn|rare`); if that leaves a single row, it joins one shared
    `rare` stratum. With `source`, the same rule runs on (source, instrument, MIDI)
    (fallback (source, instrument), then `rare`), so every source keeps its proportions.
    """
    if source is None:
        groups = [str(i) for i in instrument]
    else:
        groups = [f"{s}|{i}" for s, i in zip(source, instrument, strict=True)]
    joint = [f"{g}|{int(m)}" for g, m in zip(groups, midi, strict=True)]
    counts = Counter(joint)
    keys = [k if counts[k] >= 2 else f"{g}|rare" for k, g in zip(joint, groups, strict=True)]
    counts = Counter(keys)
    return np.array([k if counts[k] >= 2 else "rare" for k in keys])


def create_snapshot(
    paths: np.ndarray | list[str],
    midi: np.ndarray | list[int],
    instrument: np.ndarray | list[str],
    fold: np.ndarray | list[int],
    pitch: np.ndarray,
    instrument_spec: np.ndarray,
    *,
    seed: int = 42,
    test_size: float = 0.25,
    feature_digest: str = "",
    feature_preset: str = "",
    source: np.ndarray | list[str] | None = None,
    test_fold: int | None = None,
) -> Snapshot:
    """Sort rows by (source, path), split train/test reproducibly, and fingerprint the result.

    With `test_fold`, the split is TinySOL's own protocol instead: the rows of that `Fold`
    are the test part (`fold_split_rows`; run every fold and report the mean, as its
    authors ask), and `test_size`/`seed` play no part.

    `source` names each row's dataset (default: every row in `DEFAULT_SOURCE`); (source,
    path) pairs must be unique, the same path may appear in several sources.

    The split is `sklearn.model_selection.train_test_split(test_size, random_state=seed)`
    stratified by `strata()` (instrument x MIDI, rare pairs by instrument; with more than
    one source, source x instrument x MIDI first). When the test side is too small to hold
    one row of every stratum (tiny data sets), it falls back to instrument x MIDI, then to
    instrument only, and if even that fails it splits without stratification; the rule
    used is kept in `Snapshot.stratify`. With one source the split is the one of
    instrument x MIDI alone, as before sources existed.
    """
    paths_a = np.asarray(paths).astype(str)
    source_a = np.full(len(paths_a), DEFAULT_SOURCE) if source is None else np.asarray(source).astype(str)
    columns = {
        "midi": np.asarray(midi),
        "instrument": np.asarray(instrument).astype(str),
        "fold": np.asarray(fold),
        "pitch": np.asarray(pitch),
        "instrument_spec": np.asarray(instrument_spec),
    }
    _check_rows(paths_a, source_a, columns, test_size, sources_given=source is not None)

    order = np.lexsort((paths_a, source_a))  # by source, then path
    if test_fold is not None:
        keep, is_test = fold_split_rows(
            source_a[order], paths_a[order], columns["midi"][order], columns["fold"][order], test_fold
        )
        order = order[keep]
        is_test = is_test[keep]
        rule, test_size = f"fold {int(test_fold)}", float(is_test.mean())
    source_s = source_a[order]
    paths_s = paths_a[order]
    midi_s = columns["midi"].astype(np.int64)[order]
    instrument_s = columns["instrument"][order]
    fold_s = columns["fold"].astype(np.int64)[order]
    pitch_s = np.ascontiguousarray(columns["pitch"][order], dtype=np.float32)
    inst_s = np.ascontiguousarray(columns["instrument_spec"][order], dtype=np.float32)
    if test_fold is None:
        rule, is_test = _stratified_test_rows(source_s, instrument_s, midi_s, test_size, seed)

    digest = _digest(source_s, paths_s, midi_s, instrument_s, fold_s, pitch_s, inst_s, is_test)
    return Snapshot(
        paths=paths_s,
        midi=midi_s,
        instrument=instrument_s,
        fold=fold_s,
        pitch=pitch_s,
        instrument_spec=inst_s,
        is_test=is_test,
        seed=int(seed),
        test_size=float(test_size),
        digest=digest,
        feature_digest=feature_digest,
        feature_preset=feature_preset,
        stratify=rule,
        source=source_s,
    )


def fold_split_rows(
    source: np.ndarray, paths: np.ndarray, midi: np.ndarray, fold: np.ndarray, test_fold: int
) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept, test mask) of the split "fold `test_fold` is the test part".

    A re-tuned neighbour (`tinysol.resampled_from`) whose origin lies on the other side of
    the split is left out: it is the same recording, shifted, and would leak it. TinySOL's
    own folds put 25 of its 40 resampled notes in another fold than their origin.
    """
    fold = np.asarray(fold).astype(np.int64)
    if int(test_fold) not in set(fold.tolist()):
        raise ValueError(f"no row is in fold {test_fold}; the folds present are {sorted(set(fold.tolist()))}")
    is_test = fold == int(test_fold)
    row_of = {}
    for i, (src, path, m) in enumerate(zip(source.tolist(), paths.tolist(), midi.tolist(), strict=True)):
        key = take_key(path, int(m))
        if key is not None:
            row_of[(src, *key)] = i
    keep = np.ones(len(fold), dtype=bool)
    for i, (src, path, m) in enumerate(zip(source.tolist(), paths.tolist(), midi.tolist(), strict=True)):
        origin = resampled_from(path, int(m))
        j = row_of.get((src, *origin)) if origin is not None else None
        if j is not None and is_test[i] != is_test[j]:
            keep[i] = False
    return keep, is_test


def _check_rows(
    paths: np.ndarray, source: np.ndarray, columns: dict[str, np.ndarray], test_size: float, *, sources_given: bool
) -> None:
    """Refuse, with the reason, what would make a wrong snapshot: lengths, duplicates, unknown labels."""
    n = len(paths)
    if n < 2:
        raise ValueError(f"a snapshot needs at least 2 notes, got {n}")
    if len(source) != n:
        raise ValueError(f"source has {len(source)} rows, paths has {n}")
    if any(not s for s in source.tolist()):
        raise ValueError("source names must not be empty")
    keys = list(zip(source.tolist(), paths.tolist(), strict=True))
    if len(set(keys)) != n:
        dupes = [f"{s}:{p}" if sources_given else p for (s, p), c in Counter(keys).items() if c > 1][:3]
        raise ValueError(f"(source, path) pairs must be unique; duplicated: {dupes}")
    for name, column in columns.items():
        if len(column) != n:
            raise ValueError(f"{name} has {len(column)} rows, paths has {n}")
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    unknown = sorted(set(columns["instrument"].tolist()) - set(INSTRUMENT_ABBRS))
    if unknown:
        raise ValueError(f"unknown instrument abbreviations {unknown}; expected TinySOL's {list(INSTRUMENT_ABBRS)}")
    midi = columns["midi"].astype(np.int64)
    outside = sorted({int(m) for m in midi if not MIDI_CLASSES[0] <= m <= MIDI_CLASSES[-1]})
    if outside:
        raise ValueError(f"MIDI numbers {outside} are outside {MIDI_CLASSES[0]}..{MIDI_CLASSES[-1]} (MIDI_CLASSES)")


def _stratified_test_rows(
    source: np.ndarray, instrument: np.ndarray, midi: np.ndarray, test_size: float, seed: int
) -> tuple[str, np.ndarray]:
    """(the stratification rule that worked, the test mask): the finest strata the data allow."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(midi))
    attempts = [("instrument+midi", strata(instrument, midi)), ("instrument", instrument), ("none", None)]
    if len(set(source.tolist())) > 1:
        attempts.insert(0, ("source+instrument+midi", strata(instrument, midi, source)))
    rule, test_idx = "none", index[:0]
    for candidate, labels in attempts:
        try:
            _, test_idx = train_test_split(index, test_size=test_size, random_state=seed, stratify=labels)
        except ValueError:
            continue
        rule = candidate
        break
    is_test = np.zeros(len(midi), dtype=bool)
    is_test[test_idx] = True
    return rule, is_test


# ------------------------------------------------------------------ MLflow transport


def mlflow_dataset(snapshot: Snapshot, uri: str | None = None) -> Any:
    """The snapshot as an MLflow dataset (name, digest, where it is stored) for `mlflow.log_input`.

    Only its description is logged, not the arrays: the runs list's Datasets column then
    shows which snapshot each model was trained on, and the digest matches `data_digest`.
    """
    from mlflow.data.dataset_source import DatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    class SnapshotSource(DatasetSource):
        """A snapshot stored as an MLflow artifact (`runs:/<parent run>/snapshot/snapshot.npz`)."""

        def __init__(self, uri: str):
            self.uri = uri

        @staticmethod
        def _get_source_type() -> str:
            return "instropitch_snapshot"

        def load(self, dst_path: str | None = None) -> str:
            import mlflow

            return mlflow.artifacts.download_artifacts(self.uri, dst_path=dst_path)

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> SnapshotSource:
            return cls(str(raw_source))

        def to_dict(self) -> dict[str, Any]:
            return {"uri": self.uri}

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> SnapshotSource:
            return cls(str(source_dict["uri"]))

    counts = ", ".join(f"{name}={n}" for name, n in sorted(snapshot.source_counts().items()))
    return MetaDataset(
        source=SnapshotSource(uri or f"snapshot:{snapshot.digest}"),
        name=f"snapshot {counts}"[:500],
        digest=snapshot.digest[:16],
    )


def log_snapshot(snapshot: Snapshot, *, run_id: str | None = None, experiment: str = "instropitch") -> str:
    """Store the snapshot as an artifact of `run_id` (or of a new `snapshot` run); return its URI.

    The returned `runs:/<run_id>/snapshot/snapshot.npz` string is small enough for XCom;
    `download_snapshot(uri)` gets the arrays back in another task.
    """
    import tempfile

    import mlflow

    client = mlflow.MlflowClient()
    if run_id is None:
        from instropitch.ml.tracking import ensure_experiment

        run = client.create_run(
            ensure_experiment(experiment), run_name="snapshot", tags={"instropitch.kind": "snapshot"}
        )
        run_id = run.info.run_id
        own_run = True
    else:
        own_run = False
    with tempfile.TemporaryDirectory() as tmp:
        local = snapshot.save(Path(tmp) / SNAPSHOT_FILENAME)
        client.log_artifact(run_id, str(local), artifact_path=SNAPSHOT_ARTIFACT_DIR)
    client.set_tag(run_id, "data_digest", snapshot.digest)
    client.set_tag(run_id, "feature_digest", snapshot.feature_digest)
    client.set_tag(run_id, "snapshot.n_notes", str(len(snapshot)))
    client.set_tag(run_id, "snapshot.n_test", str(snapshot.n_test))
    client.set_tag(run_id, "snapshot.stratify", snapshot.stratify)
    if own_run:
        client.set_terminated(run_id)
    return f"runs:/{run_id}/{SNAPSHOT_ARTIFACT}"


def download_snapshot(uri: str) -> Snapshot:
    """Load a snapshot from an MLflow artifact URI (`runs:/...`, `s3://...`) or a local path."""
    if "://" not in uri and Path(uri).exists():
        return Snapshot.load(uri)
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        return Snapshot.load(local)
