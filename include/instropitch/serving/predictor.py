"""Which instrument plays this note, and which note is it? Both CNNs behind one call.

A `Predictor` holds the pitch and the instrument models as ONNX graphs (the portable copy
logged with every registered version, run by `serving.portable`: no TensorFlow), the label
layout each was trained with and the `FeatureConfig` their spectrograms must be computed
with. It is loaded from one of:

* the MLflow model registry: `instropitch-pitch` and `instropitch-instrument` at the
  alias `champion` (default), another alias, or a given version of each
  (`Predictor.from_registry(versions={"pitch": "3"})`). The features come from the preset
  each model logged in its label layout (`features`), checked against its `feature_digest`.
  What a version served is cached (`serving.modelcache`), so the next start only asks the
  registry which version the alias names; a sqlite store or a tracking server answers that
  without MLflow (`serving.registry_lookup`), and then MLflow is not imported at all (it was
  ~4 s of a 5 s CLI start). Otherwise only the MLflow client is imported;
* an export folder written by `Predictor.export(dir)` / `instropitch export --out DIR`:
  both `.onnx` models, `labels.json`, `features.json` (the full feature config, so no
  preset lookup) and `manifest.json` (versions, test accuracies). Loading it needs no
  MLflow (`Predictor.from_export(dir)`).

Versions registered and exports written before portable models hold only Keras models:
they are converted here (TensorFlow needed, a log line says so) and registry ones cached.

`Predictor.load()` picks an export when given one (or `$INSTROPITCH_EXPORT_DIR` is set)
and the registry otherwise. Prediction reads what the spectrograms need
(`features.compute_features`: the whole file when the preset locates the note); `predict_many` computes a batch of spectrograms and
calls each model once per batch. Any format `audio` reads is accepted (WAV, FLAC, MP3, ...).
A file that cannot be used (not audio, truncated, silent, ...) gives a `Prediction` with
`error` set, never an exception. `warnings` carry what a user should know of a file that was
answered: read despite its header (a WAV written to a pipe), or what a check of the audio found: narrow-band,
no pitched note, plucked or struck, a chord, between two notes, no steady period (`serving.caveats`, which also
names the answers such a check takes out of the models' hands), notes in turn or a glide (`audio.melody`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from instropitch import audio
from instropitch.audio import inputs, melody, periodicity, purity, tuning
from instropitch.audio.features import FeatureConfig, Features, SpectrogramConfig, compute_features, get_preset
from instropitch.ml.calibration import Calibration, candidate_mask, family_proba
from instropitch.serving import caveats, modelcache, pitch_evidence, registry_lookup
from instropitch.serving.export import FEATURES_FILENAME, model_file, read_export, write_export
from instropitch.serving.portable import OnnxModel, PortableModelError
from instropitch.serving.registry_lookup import VersionRecord
from instropitch.serving.results import ModelInfo, Prediction, PredictorError, confidence
from instropitch.tinysol import (
    FAMILIES,
    INSTRUMENT_BY_ABBR,
    family_indices,
    midi_to_hz,
    midi_to_note_octave,
    midi_to_pitch,
)

ROLES: tuple[str, ...] = ("pitch", "instrument")
"""The two models, by spec name (registered as `instropitch-pitch`, `instropitch-instrument`)."""
ROLE_LABEL = {"pitch": "midi", "instrument": "instrument"}
"""What each role must predict (the `label` of its model spec)."""

CHAMPION = "champion"
ENV_EXPORT_DIR = "INSTROPITCH_EXPORT_DIR"
"""An export folder to serve instead of the registry (read by `Predictor.load`)."""
ENV_FEATURE_THREADS = "INSTROPITCH_FEATURE_THREADS"
"""Threads computing a batch's spectrograms (default: up to 2; numpy's FFT and ufuncs release the GIL)."""

LOG = logging.getLogger("instropitch.serving")

DEFAULT_TOP_K = 3
NOT_SURE_CANDIDATES = 3
"""How many answers a "not sure" verdict lists when its model's calibration fitted no candidate floor
(versions trained before it); otherwise as many as reach the floor (`ml.calibration.candidate_floor`)."""
LEAST_CANDIDATES = 2
"""A "not sure" verdict lists at least this many: one candidate alone would read as a sure answer."""
DEFAULT_BATCH_SIZE = 64
_MODEL_CHUNK = 256

# ----------------------------------------------------------------------- results


# ------------------------------------------------------------------------ models


@dataclass
class _Model:
    """One CNN as an ONNX graph, with the label layout it was trained with."""

    onnx: bytes
    net: OnnxModel
    label: str
    input: str
    class_names: list[str]
    class_values: list[Any]
    input_shape: tuple[int, int]
    layout: dict[str, Any]
    info: ModelInfo
    calibration: Calibration = field(default_factory=Calibration)
    """From the layout (`ml.calibration`); identity for versions trained before calibration existed."""

    def proba(self, x: np.ndarray) -> np.ndarray:
        """(N, frames, bands) -> (N, n_classes) probabilities."""
        return self.answer(x)[0]

    def answer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, frames, bands) -> ((N, n_classes) probabilities, (N,) foreignness or None): every
        answer's probabilities come from here."""
        if len(x) == 0:
            empty = np.zeros(0, dtype=np.float64) if self.net.answers_foreignness else None
            return np.zeros((0, len(self.class_names)), dtype=np.float64), empty
        x = np.asarray(x, dtype=np.float32)
        parts = [self.net.answer(x[i : i + _MODEL_CHUNK]) for i in range(0, len(x), _MODEL_CHUNK)]
        proba = np.concatenate([np.asarray(p) for p, _ in parts]).astype(np.float64)
        if not self.net.answers_foreignness:
            return proba, None
        return proba, np.concatenate([np.asarray(f).reshape(-1) for _, f in parts]).astype(np.float64)

    def shown(self, proba: np.ndarray, foreignness: float | None = None) -> np.ndarray:
        """One note's calibrated probabilities (softened the more foreign the note, when the model says)."""
        f = None if foreignness is None else np.array([foreignness])
        return self.calibration.apply(proba[None, :], f)[0]


def calibration_summary(calibration: Calibration) -> dict[str, Any]:
    """What `/models` says of a model's shown confidence: on what it was fitted, how it scales the softmax, the
    confidence at which an answer (and the instrument's family) is shown as sure (None: never), and its error on
    the notes it was fitted on (flattering: MLflow's `calibration.heldout_ece` is the honest one); `familiar_notes`:
    answers on notes of fonts the fits trained on that its temperature was also fitted on (0: none)."""
    return {
        "fitted_on": calibration.fitted_on,
        "scaling": calibration.describe(),
        "sure_at": calibration.threshold if 0 < calibration.threshold < 1 else None,
        "family_sure_at": calibration.family_threshold if 0 < calibration.family_threshold < 1 else None,
        "candidates_level": calibration.candidate_level or None,
        "fitted_notes": calibration.n,
        "fitted_notes_ece": calibration.ece,
        "familiar_notes": calibration.familiar_n,
    }


def _model_from_layout(role: str, onnx: bytes, layout: Mapping[str, Any], info: ModelInfo, where: str) -> _Model:
    from instropitch.ml.snapshot import class_values

    try:
        label = str(layout["label"])
        model_input = str(layout["input"])
        names = [str(n) for n in layout["class_names"]]
        shape = tuple(int(n) for n in layout["input_shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PredictorError(f"{where}: the label layout lacks {exc}; was it logged by instropitch training?") from None
    if label != ROLE_LABEL[role]:
        raise PredictorError(
            f"{where}: the {role} model must predict {ROLE_LABEL[role]!r}, this one predicts {label!r}"
        )
    try:
        inputs.spectrograms_read(model_input)
    except ValueError as exc:
        raise PredictorError(f"{where}: {exc}") from None
    if role == "pitch" and inputs.needs_note(model_input):
        raise PredictorError(f"{where}: the pitch model cannot read {model_input!r}, an input built from the note")
    try:
        net = OnnxModel(onnx)
    except PortableModelError as exc:
        raise PredictorError(f"{where}: {exc}") from None
    outputs = net.n_outputs
    if outputs != len(names):
        raise PredictorError(f"{where}: the model has {outputs} outputs but its layout names {len(names)} classes")
    if tuple(net.input_shape) != shape:
        raise PredictorError(f"{where}: the model reads {net.input_shape} spectrograms, its layout says {shape}")
    values = class_values(label, names)
    if label == "instrument":
        unknown = [v for v in values if v not in INSTRUMENT_BY_ABBR]
        if unknown:
            raise PredictorError(f"{where}: unknown instrument classes {unknown}")
    calibration = Calibration.from_dict(layout.get("calibration"))
    return _Model(onnx, net, label, model_input, names, list(values), shape, dict(layout), info, calibration)


def _converted(keras_model: Any, where: str) -> bytes:
    """The ONNX copy of a Keras model (needs TensorFlow and tf2onnx: the training install)."""
    try:
        from instropitch.ml.portable import to_onnx
    except ImportError as exc:
        raise PredictorError(f"{where} has no portable copy and converting it needs TensorFlow: {exc}") from None
    try:
        return to_onnx(keras_model)
    except Exception as exc:  # ConversionError, or an import error of the training stack
        raise PredictorError(f"{where}: cannot convert the Keras model to ONNX: {_first_line(exc)}") from None


def _combined_features(
    models: Mapping[str, _Model], presets: Mapping[str, FeatureConfig], fallback: FeatureConfig
) -> FeatureConfig:
    """One `FeatureConfig` whose `pitch`/`instrument` slots are what the models reading them need.

    `presets[role]` is the feature config `role`'s model was trained on; its input says which
    slots it reads (`audio.inputs.spectrograms_read`). A slot no model reads keeps
    `fallback`'s (it is computed and unused).
    """
    slots: dict[str, SpectrogramConfig] = {}
    for role, model in models.items():
        for slot in inputs.spectrograms_read(model.input):
            cfg = getattr(presets[role], slot)
            if slot in slots and slots[slot] != cfg:
                raise PredictorError(
                    f"both models read the {slot!r} spectrogram but were trained on different settings of it"
                )
            slots[slot] = cfg
    located = {presets[role].locate_note for role in models} or {fallback.locate_note}
    if len(located) > 1:
        raise PredictorError("one model was trained on windows placed on the note, the other on the whole file")
    combined = FeatureConfig(
        pitch=slots.get("pitch", fallback.pitch),
        instrument=slots.get("instrument", fallback.instrument),
        locate_note=located.pop(),
    )
    for role, model in models.items():
        try:
            shape = inputs.input_shape(model.input, combined)
        except ValueError as exc:
            raise PredictorError(f"the {role} model: {exc}") from None
        if tuple(shape) != model.input_shape:
            raise PredictorError(
                f"the {role} model reads inputs of shape {model.input_shape}, its feature config "
                f"gives {shape}: the features changed since training"
            )
    return combined


@dataclass(frozen=True)
class _RegistryRole:
    """One role's model from the registry, with the feature preset it was trained on."""

    model: _Model
    preset: FeatureConfig


def registered_name(role: str) -> str:
    from instropitch.ml import registry  # numpy and the tag names only: no TensorFlow, no MLflow

    return registry.registered_name(role)


def _registry_role(
    role: str, record: VersionRecord, wanted: str, onnx: bytes, layout: Mapping[str, Any]
) -> _RegistryRole:
    """The model of a registered version and the features it was trained on (the same whichever way it was looked up)."""
    from instropitch.ml import registry

    test, heldout = registry.version_accuracies(record.tags)
    info = ModelInfo(
        role=role,
        registered_model=record.name,
        version=record.version,
        alias=wanted[1:] if wanted.startswith("@") else None,
        test_accuracy=test,
        heldout_accuracy=heldout,
        run_id=record.run_id,
        source_uri=f"models:/{record.name}/{record.version}",
        feature_preset=layout.get("features"),
        feature_digest=layout.get("feature_digest") or None,
        data_digest=layout.get("data_digest") or None,
    )
    where = f"{record.name} v{record.version}"
    model = _model_from_layout(role, onnx, layout, info, where)
    preset_name = layout.get("features")
    if not preset_name:
        raise PredictorError(f"{where}: its label layout names no features preset")
    try:
        preset = get_preset(str(preset_name))
    except ValueError as exc:
        raise PredictorError(f"{where}: {exc}") from None
    digest = layout.get("feature_digest")
    if digest and digest != preset.digest():
        raise PredictorError(
            f"{where} was trained on features {digest}, but preset {preset_name!r} now computes "
            f"{preset.digest()}: the feature code or preset changed since training; retrain the model, "
            "or predict from an export made when they matched"
        )
    return _RegistryRole(model, preset)


# --------------------------------------------------------------------- predictor


class Predictor:
    """Both CNNs, their class layouts and the feature config they were trained on."""

    def __init__(self, pitch: _Model, instrument: _Model, features: FeatureConfig, *, source: str, location: str):
        self.pitch_model = pitch
        self.instrument_model = instrument
        self.instrument_families = family_indices([str(v) for v in instrument.class_values])
        """Each instrument class's family (`tinysol.FAMILIES` index): known abbreviations, checked at load."""
        self.features = features
        self.source = source
        self.location = location
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        *,
        from_export: str | os.PathLike | None = None,
        versions: Mapping[str, str] | None = None,
        alias: str = CHAMPION,
        tracking_uri: str | None = None,
    ) -> Predictor:
        """An export if given (or `$INSTROPITCH_EXPORT_DIR` is set), else the registry."""
        export_dir = from_export or os.environ.get(ENV_EXPORT_DIR) or None
        if export_dir and not versions:
            return cls.from_export(export_dir)
        if export_dir and from_export:
            raise PredictorError("model versions come from the registry: give either an export folder or versions")
        return cls.from_registry(versions, alias=alias, tracking_uri=tracking_uri)

    @classmethod
    def from_registry(
        cls,
        versions: Mapping[str, str] | None = None,
        *,
        alias: str = CHAMPION,
        tracking_uri: str | None = None,
    ) -> Predictor:
        """Load `instropitch-pitch` and `instropitch-instrument` from the MLflow registry.

        `versions` maps a role to a version number (`"3"`) or an alias (`"@challenger"`);
        a role not named takes `alias`. The tracking server is `tracking_uri` or
        `$MLFLOW_TRACKING_URI`. The aliases are resolved on every call; when the store can
        be read without MLflow and both versions are cached, MLflow is not imported at all
        (`_from_cached_versions`).
        """
        unknown = sorted(set(versions or {}) - set(ROLES))
        if unknown:
            raise PredictorError(f"unknown model(s) {unknown}; known: {', '.join(ROLES)}")
        wanted = {role: str((versions or {}).get(role) or f"@{alias}") for role in ROLES}
        cached = cls._from_cached_versions(wanted, tracking_uri)
        if cached is not None:
            return cached

        import mlflow

        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        uri = require_store()
        cache_key = mlflow.get_tracking_uri()
        client = mlflow.MlflowClient()
        roles: dict[str, _RegistryRole] = {}
        for role in ROLES:
            name = registered_name(role)
            try:
                if wanted[role].startswith("@"):
                    mv = client.get_model_version_by_alias(name, wanted[role][1:])
                else:
                    mv = client.get_model_version(name, wanted[role])
            except Exception as exc:  # MlflowException, or a driver / HTTP error under it
                code = getattr(exc, "error_code", "")
                if code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise PredictorError(f"cannot read the model registry at {uri}: {_first_line(exc)}") from None
                what = f"alias {wanted[role][1:]!r}" if wanted[role].startswith("@") else f"version {wanted[role]}"
                raise PredictorError(
                    f"no {what} of registered model {name!r} at {uri} ({_first_line(exc)}); "
                    "train and promote one (the training DAG), pick another with --model-version, "
                    "or predict from an export with --from-export DIR"
                ) from None
            record = VersionRecord(name=name, version=str(mv.version), run_id=mv.run_id, tags=dict(mv.tags or {}))
            onnx, layout = _registry_model(client, record, cache_key, uri)
            roles[role] = _registry_role(role, record, wanted[role], onnx, layout)
        return cls._from_registry_roles(roles, uri)

    @classmethod
    def _from_cached_versions(cls, wanted: Mapping[str, str], tracking_uri: str | None) -> Predictor | None:
        """The predictor without importing MLflow (~4 s of a CLI start), or None to load it the usual way.

        Possible when the tracking URI is known without MLflow, the store answers the version
        lookups itself (`serving.registry_lookup`: sqlite, HTTP) and both versions are in the
        model cache under that same URI. A store that does not exist gives the usual error here
        (and nothing is created); any other miss or lookup error returns None.
        """
        uri = registry_lookup.tracking_uri(tracking_uri)
        if uri is None:
            return None
        shown = require_store(uri)
        roles: dict[str, _RegistryRole] = {}
        for role in ROLES:
            name = registered_name(role)
            target = wanted[role]
            try:
                if target.startswith("@"):
                    record = registry_lookup.lookup(uri, name, alias=target[1:])
                else:
                    record = registry_lookup.lookup(uri, name, version=target)
            except registry_lookup.LookupUnavailable as exc:
                LOG.debug("registry lookup without MLflow not possible (%s): using the MLflow client", exc)
                return None
            hit = modelcache.read(modelcache.entry_dir(uri, name, record.version), record.run_id)
            if hit is None:
                return None
            roles[role] = _registry_role(role, record, target, hit.model, hit.layout)
        return cls._from_registry_roles(roles, shown)

    @classmethod
    def _from_registry_roles(cls, roles: Mapping[str, _RegistryRole], uri: str) -> Predictor:
        models = {role: r.model for role, r in roles.items()}
        presets = {role: r.preset for role, r in roles.items()}
        features = _combined_features(models, presets, roles["pitch"].preset)
        return cls(models["pitch"], models["instrument"], features, source="registry", location=uri)

    @classmethod
    def from_export(cls, directory: str | os.PathLike) -> Predictor:
        """Load a folder written by `export` (no MLflow involved; a Keras-only export is converted)."""
        root = Path(directory)
        manifest, layouts, features = read_export(root)
        models: dict[str, _Model] = {}
        for role in ROLES:
            entry = (manifest.get("models") or {}).get(role)
            if not entry or role not in layouts:
                raise PredictorError(f"{root}: the export has no {role} model")
            path = model_file(root, role, entry)
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise PredictorError(f"{path}: cannot read the model: {exc.strerror or exc}") from None
            if path.suffix == ".keras":
                LOG.warning("%s: a Keras model from before portable exports; converting it to ONNX (slow)", path)
                data = _converted(_load_keras(path), str(path))
            known = {k: entry.get(k) for k in ModelInfo.__dataclass_fields__ if k != "role"}
            info = ModelInfo(role=role, **known)
            models[role] = _model_from_layout(role, data, layouts[role], info, str(path))
        combined = _combined_features(models, dict.fromkeys(models, features), features)
        if combined != features:
            raise PredictorError(f"{root}: {FEATURES_FILENAME} does not fit the models' inputs")
        return cls(models["pitch"], models["instrument"], features, source="export", location=str(root.resolve()))

    # ------------------------------------------------------------------ export

    def export(self, out_dir: str | os.PathLike) -> Path:
        """Write a self-contained folder `from_export` can load (see `serving.export`); returns its path."""
        return write_export(
            out_dir,
            models={role: (m.onnx, m.layout, m.info.to_dict()) for role, m in self.models.items()},
            features=self.features,
            exported_from={"source": self.source, "location": redact_uri(self.location)},
        )

    # --------------------------------------------------------------- describing

    @property
    def models(self) -> dict[str, _Model]:
        return {"pitch": self.pitch_model, "instrument": self.instrument_model}

    def describe(self) -> dict[str, Any]:
        """Where the models come from, their versions and test accuracies, the feature digest, and how each
        model's shown confidence is made and when it says "sure"."""
        return {
            "source": self.source,
            "location": redact_uri(self.location),
            "models": {role: model.info.to_dict() for role, model in self.models.items()},
            "feature_digest": self.features.digest(),
            "input_shapes": {role: list(model.input_shape) for role, model in self.models.items()},
            "calibration": {role: calibration_summary(model.calibration) for role, model in self.models.items()},
        }

    # --------------------------------------------------------------- predicting

    def predict_file(
        self,
        source: audio.Source,
        name: str | None = None,
        *,
        top_k: int = DEFAULT_TOP_K,
        max_duration: float | None = audio.DEFAULT_MAX_DURATION,
        keep_spectrograms: bool = False,
    ) -> Prediction:
        """Predict one file (a path, bytes or a binary file object); `name` labels it."""
        label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<bytes>")
        return self.predict_many(
            [(label, source)], top_k=top_k, max_duration=max_duration, keep_spectrograms=keep_spectrograms
        )[0]

    def predict_many(
        self, sources: Iterable[audio.Source | tuple[str, audio.Source]], **options: Any
    ) -> list[Prediction]:
        """Predictions in input order, as a list; the options are `iter_predictions`'."""
        return list(self.iter_predictions(sources, **options))

    def iter_predictions(
        self,
        sources: Iterable[audio.Source | tuple[str, audio.Source]],
        *,
        top_k: int = DEFAULT_TOP_K,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_duration: float | None = audio.DEFAULT_MAX_DURATION,
        keep_spectrograms: bool = False,
        progress: Callable[[str], None] | None = None,
    ) -> Iterator[Prediction]:
        """Yield one `Prediction` per source, in order, computed `batch_size` files at a time.

        Each item is a path, bytes, or `(name, source)`. Spectrograms of a batch are stacked
        and each model is called once per batch. `progress(name)` is called as each file's
        spectrograms are done (or it fails).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        batch: list[tuple[str, audio.Source]] = []
        for item in sources:
            if isinstance(item, tuple):
                batch.append((str(item[0]), item[1]))
            else:
                batch.append((os.fspath(item) if isinstance(item, (str, os.PathLike)) else "<bytes>", item))
            if len(batch) >= batch_size:
                yield from self._predict_batch(batch, top_k, max_duration, keep_spectrograms, progress)
                batch = []
        if batch:
            yield from self._predict_batch(batch, top_k, max_duration, keep_spectrograms, progress)

    def _predict_batch(
        self,
        batch: Sequence[tuple[str, audio.Source]],
        top_k: int,
        max_duration: float | None,
        keep_spectrograms: bool,
        progress: Callable[[str], None] | None,
    ) -> list[Prediction]:
        results: list[Prediction | None] = [None] * len(batch)
        good: list[int] = []
        warnings: dict[int, list[str]] = {}
        spectrograms: dict[str, list[np.ndarray]] = {"pitch": [], "instrument": []}
        notes: list[Features] = []
        for i, outcome in enumerate(self._batch_features(batch, max_duration)):
            name = batch[i][0]
            if isinstance(outcome, BaseException):
                results[i] = Prediction.failure(name, outcome)
            else:
                feats, warnings[i] = outcome
                good.append(i)
                spectrograms["pitch"].append(feats.pitch)
                spectrograms["instrument"].append(feats.instrument)
                notes.append(feats)
            if progress is not None:
                progress(name)
        if good:
            stacked = {k: np.stack(v).astype(np.float32, copy=False) for k, v in spectrograms.items()}
            with self._lock:
                p_pitch = self.pitch_model.proba(self._model_input(self.pitch_model, stacked))
            k = max(0, int(top_k))

            def check(row: int) -> tuple[pitch_evidence.PeriodCheck | None, str | None]:
                return self._period_evidence(notes[row], p_pitch[row])

            pool = self._feature_pool() if len(good) > 1 else None
            rows = range(len(good))
            evidence, unpitched = zip(*(pool.map(check, rows) if pool is not None else map(check, rows)), strict=True)
            shown_pitch = np.stack([self._shown_pitch(p_pitch[row], evidence[row]) for row in rows])
            notes_heard = np.asarray(self.pitch_model.class_values)[np.argmax(shown_pitch, axis=1)]
            plucked = [caveats.plucked_or_struck_warning(note.fall) for note in notes]
            # a plucked or struck note dies away within the window too: its own warning says more
            short = [
                None if plucked[row] else caveats.short_note_warning(note.held, self.features)
                for row, note in enumerate(notes)
            ]
            pure = [caveats.pure_tone_warning(self._impurity_db(note)) for note in notes]
            lowest = [self._lowest_fundamental_hz(note) for note in notes]
            highest = int(max(self.pitch_model.class_values))
            glides = [melody.glide_warning(note.glide, note.pitch_window) for note in notes]
            cents = [self._cents_off(note, float(notes_heard[row])) for row, note in enumerate(notes)]
            evidence = list(evidence)
            for row, note in enumerate(notes):
                nearer = self._nearer(evidence[row], cents[row], float(notes_heard[row]))
                if nearer is not None:  # named a note it sounds further from than from the next: named anew
                    evidence[row] = nearer
                    shown_pitch[row] = self._shown_pitch(p_pitch[row], nearer)
                    notes_heard[row] = self.pitch_model.class_values[int(np.argmax(shown_pitch[row]))]
                    cents[row] = self._cents_off(note, float(notes_heard[row]))
            for row, i in enumerate(good):
                held = notes[row].notes or []
                several = melody.several_notes_warning(held, notes[row].pitch_window, float(notes_heard[row]))
                period_warning = caveats.shared_period_warning(evidence[row]) or caveats.unrepeated_warning(
                    evidence[row], int(notes_heard[row])
                )
                between = caveats.between_notes_warning(cents[row], int(notes_heard[row]))
                hum = caveats.mains_hum_warning(notes[row].hum, int(notes_heard[row]))
                said = (
                    caveats.above_range_warning(lowest[row], highest),
                    several,
                    glides[row],
                    unpitched[row],
                    period_warning,
                    between,
                    hum,
                    plucked[row],
                    short[row],
                    pure[row],
                )
                warnings[i] += [w for w in said if w]
            with self._lock:
                p_inst, f_inst = self.instrument_model.answer(
                    self._model_input(self.instrument_model, stacked, notes_heard)
                )
            for row, i in enumerate(good):
                foreign = None if f_inst is None else float(f_inst[row])
                result = self._prediction(
                    batch[i][0],
                    p_pitch[row],
                    shown_pitch[row],
                    p_inst[row],
                    k,
                    evidence[row],
                    foreign,
                    caveats.overruled(
                        unpitched=unpitched[row] is not None,
                        plucked=plucked[row] is not None,
                        glide=glides[row] is not None,
                        chord=evidence[row] is not None and evidence[row].shared,
                        between=caveats.between_notes(cents[row]),
                        unrepeated=evidence[row] is not None and evidence[row].unrepeated,
                        short=short[row] is not None,
                        pure=pure[row] is not None,
                        hum=caveats.at_hum(notes[row].hum, int(notes_heard[row])),
                        above=caveats.above_range(lowest[row], highest),
                    ),
                    cents[row],
                )
                result.warnings = warnings.get(i, [])
                if keep_spectrograms:
                    result.spectrograms = {"pitch": stacked["pitch"][row], "instrument": stacked["instrument"][row]}
                results[i] = result
        return [r for r in results if r is not None]

    def _batch_features(self, batch: Sequence[tuple[str, audio.Source]], max_duration: float | None) -> Iterator[Any]:
        """Each file's (`Features`, warnings) or the exception it raised, in order; several files at once when threads allow."""

        def one(item: tuple[str, audio.Source]) -> Any:
            name, source = item
            try:
                with audio.open_source(source, name) as src:
                    info = audio.read_info(src, max_duration=max_duration)
                    said = [info.warning, caveats.narrow_band_warning(info, self.features)]
                    feats = compute_features(src, self.features, info=info, keep_audio=True, find_notes=True)
                    return feats, [w for w in said if w]
            except (audio.AudioError, OSError, ValueError, TypeError) as exc:
                return exc

        pool = self._feature_pool() if len(batch) > 1 else None
        return pool.map(one, batch) if pool is not None else map(one, batch)

    def _feature_pool(self) -> Any:
        pool = self.__dict__.get("_pool")
        if pool is None:
            configured = os.environ.get(ENV_FEATURE_THREADS, "").strip()
            threads = int(configured) if configured else min(2, os.cpu_count() or 1)
            if threads <= 1:
                return None
            from concurrent.futures import ThreadPoolExecutor

            pool = self.__dict__.setdefault("_pool", ThreadPoolExecutor(threads, thread_name_prefix="features"))
        return pool

    def _nearer(
        self, period: pitch_evidence.PeriodCheck | None, cents: float | None, midi: float
    ) -> pitch_evidence.PeriodCheck | None:
        """The neighbouring note as deciding evidence when the note named `midi` sounds nearer it
        (`pitch_evidence.nearest_check`); None otherwise, and for a period several notes share or none (a chord's
        answer stays the CNN's)."""
        if period is not None and (period.shared or period.unrepeated):
            return None
        return pitch_evidence.nearest_check(cents, midi, np.asarray(self.pitch_model.class_values, dtype=np.float64))

    def _cents_off(self, feats: Features, midi: float) -> float | None:
        """How far the note sounds from the `midi` it is named, in cents (`audio.tuning`), over the pitch window."""
        if feats.pitch_audio is None:
            return None
        return tuning.cents_off(feats.pitch_audio, self.features.pitch.sample_rate, midi)

    def _period_evidence(
        self, feats: Features, p_pitch: np.ndarray
    ) -> tuple[pitch_evidence.PeriodCheck | None, str | None]:
        """What the note's period says of each pitch class: always when the waveform does not repeat at
        the CNN's answer (the period alone decides), else when the answer needs a check and the note is periodic
        (a period that is a silent subharmonic of the strongest partial gives way to that partial's note).
        Whichever period it goes by, the CNN's answer where the waveform repeats included, one that several notes
        share (a chord's, a fifth's: `pitch_evidence.shared_evidence`) names none of them.
        Second, the warning of a file with no pitched note (`no_pitch_warning`), or None."""
        model = self.pitch_model
        shown = model.shown(p_pitch)
        midis = np.asarray(model.class_values, dtype=np.float64)
        top_midi = float(midis[int(np.argmax(shown))])
        if feats.pitch_audio is None:
            return None, None
        window = self.features.pitch
        heard = periodicity.repeats(feats.pitch_audio, window.sample_rate)
        repeated = pitch_evidence.repeat_check(heard, midis, top_midi) or pitch_evidence.octave_below_check(
            heard, midis, top_midi, feats.hum
        )
        if repeated is not None:
            return pitch_evidence.shared_evidence(heard, repeated.f0_hz, top_midi, midis) or repeated, None
        answer_repeats = pitch_evidence.repeats_at(heard, top_midi)
        if answer_repeats:  # the answer is a period the waveform has: a note's, or not?
            shared = pitch_evidence.shared_evidence(heard, float(midi_to_hz(top_midi)), top_midi, midis)
            if shared is not None:  # a chord or a fifth answered at the period its notes share
                return shared, None
        if not pitch_evidence.needs_check(feats.duration, float(shown.max()), model.calibration.threshold):
            if not answer_repeats and pitch_evidence.unrepeated(heard, midis, top_midi):  # sure of a note not held
                return pitch_evidence.unrepeated_check(midis), None
            return None, None
        period = periodicity.estimate(feats.pitch_audio, window.sample_rate)
        subharmonic = pitch_evidence.subharmonic_check(heard, midis, period, top_midi)
        if subharmonic is not None:
            return subharmonic, None
        period = pitch_evidence.octave_checked(heard, midis, period, feats.hum)
        likelihood = pitch_evidence.likelihood(period, midis, top_midi, heard)
        if likelihood is None:  # the CNN's answer stands: is it a note at all?
            unsure = float(shown.max()) < model.calibration.threshold
            no_note = unsure and pitch_evidence.unpitched(period, heard, top_midi)
            return None, caveats.no_pitch_warning(period) if no_note else None
        shared = pitch_evidence.shared_evidence(heard, period.f0_hz, top_midi, midis)
        if shared is not None:
            return shared, None
        weight = pitch_evidence.window_fill(feats.duration, window.duration)
        return pitch_evidence.PeriodCheck(likelihood, weight, period.f0_hz), None

    def model_inputs(self, stacked: Mapping[str, np.ndarray], notes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Each model's input (by role) from stacked `pitch`/`instrument` spectrograms; a note-relative
        input is re-centred on `notes` (MIDI numbers), by default the pitch model's top answers."""
        pitch_x = self._model_input(self.pitch_model, stacked)
        if notes is None and inputs.needs_note(self.instrument_model.input):
            notes = np.asarray(self.pitch_model.class_values)[np.argmax(self.pitch_model.proba(pitch_x), axis=1)]
        return {"pitch": pitch_x, "instrument": self._model_input(self.instrument_model, stacked, notes)}

    def _model_input(
        self, model: _Model, stacked: Mapping[str, np.ndarray], midi: np.ndarray | None = None
    ) -> np.ndarray:
        """What `model` reads, from a batch's stacked spectrograms (and the notes heard, for a note-relative input)."""
        return inputs.model_input(model.input, stacked["pitch"], stacked["instrument"], midi, self.features)

    def _shown_pitch(self, p_pitch: np.ndarray, period: pitch_evidence.PeriodCheck | None) -> np.ndarray:
        """The pitch probabilities shown: calibrated, times the period's likelihood when there is one."""
        shown = self.pitch_model.shown(p_pitch)
        if period is None:
            return shown
        return pitch_evidence.combine(shown, period.likelihood, period.cnn_weight)

    def _family(self, shown: np.ndarray) -> tuple[str, float, bool]:
        """The instrument family most likely (the shown confidences summed by family), its confidence, and whether
        it reaches the calibration's family threshold (none does for versions calibrated before it)."""
        by_family = family_proba(shown[None, :], self.instrument_families)[0]
        best = int(np.argmax(by_family))
        threshold = self.instrument_model.calibration.family_threshold
        return FAMILIES[best], confidence(by_family[best]), bool(threshold > 0 and by_family[best] >= threshold)

    def _candidates(self, role: str, shown: np.ndarray, order: np.ndarray) -> np.ndarray:
        """The classes a "not sure" answer lists, most likely first: those whose shown probability reaches
        the calibration's candidate floor (at least `LEAST_CANDIDATES`), else the top `NOT_SURE_CANDIDATES`."""
        floor = self.models[role].calibration.candidate_floor
        if floor <= 0:
            return order[:NOT_SURE_CANDIDATES]
        return order[candidate_mask(shown, floor, least=LEAST_CANDIDATES)[order]]

    def _impurity_db(self, feats: Features) -> float | None:
        """How far the pitch window is from one partial alone (`audio.purity`); None without its samples."""
        if feats.pitch_audio is None:
            return None
        return purity.impurity_db(feats.pitch_audio, self.features.pitch.sample_rate)

    def _lowest_fundamental_hz(self, feats: Features) -> float | None:
        """The lowest fundamental the pitch window's strong partials allow (`audio.purity`); None without samples."""
        if feats.pitch_audio is None:
            return None
        return purity.lowest_fundamental_hz(feats.pitch_audio, self.features.pitch.sample_rate)

    def _halfway(self, answer: int, cents: float | None) -> list[int]:
        """The pitch classes a note between two sits between (`between_notes`): the answer, then the neighbour it
        leans to (the CNN's own runner-up may be the other one)."""
        values = [int(v) for v in self.pitch_model.class_values]
        neighbour = tuning.leaning_neighbour(values[answer], cents)
        return [answer] + ([values.index(neighbour)] if neighbour in values else [])

    def _prediction(
        self,
        file: str,
        p_pitch: np.ndarray,
        shown_pitch: np.ndarray,
        p_inst: np.ndarray,
        top_k: int,
        period: pitch_evidence.PeriodCheck | None = None,
        instrument_foreignness: float | None = None,
        checks: Mapping[str, str] | None = None,
        cents: float | None = None,
    ) -> Prediction:
        """The answer from both models' raw probabilities and the pitch ones shown (`_shown_pitch`):
        calibrated, sure or not, with alternatives. An answer `checks` overrule (`overruled`; an instrument read
        relative to an overruled pitch, too) is not sure and lists its candidates with no promise
        (`not_sure_because`); for a model that reads the spectrum relative to the note, no instrument or family answer
        is surer than the pitch answer."""
        raw = {"pitch": p_pitch, "instrument": p_inst}
        shown = {"pitch": shown_pitch, "instrument": self.instrument_model.shown(p_inst, instrument_foreignness)}
        order = {role: np.argsort(-p, kind="stable") for role, p in shown.items()}
        reads_note = inputs.needs_note(self.instrument_model.input)
        because = dict(checks or {})
        if reads_note and "pitch" in because:
            because.setdefault("instrument", because["pitch"])

        def entry(role: str, j: int) -> dict[str, Any]:
            value = self.models[role].class_values[j]
            if role == "instrument":
                abbr = str(value)
                return {
                    "instrument": INSTRUMENT_BY_ABBR[abbr].name,
                    "instrument_abbr": abbr,
                    "confidence": confidence(shown[role][j]),
                }
            midi = int(value)
            note, octave = midi_to_note_octave(midi)
            return {
                "pitch": midi_to_pitch(midi),
                "note": note,
                "octave": octave,
                "midi": midi,
                "confidence": confidence(shown[role][j]),
            }

        best = {role: int(order[role][0]) for role in raw}
        sure = {
            role: bool(shown[role][best[role]] >= self.models[role].calibration.threshold and role not in because)
            for role in raw
        }
        # an instrument input read relative to the note stands on the pitch answer: no surer than it
        grounded = "instrument" not in because and (sure["pitch"] or not reads_note)
        sure["instrument"] &= grounded
        best_inst, best_pitch = entry("instrument", best["instrument"]), entry("pitch", best["pitch"])
        halfway = self._halfway(best["pitch"], cents) if because.get("pitch") == caveats.BETWEEN_NOTES else []
        family, family_confidence, family_sure = self._family(shown["instrument"])
        family_sure &= grounded
        return Prediction(
            file=file,
            instrument=best_inst["instrument"],
            instrument_abbr=best_inst["instrument_abbr"],
            instrument_confidence=best_inst["confidence"],
            note=best_pitch["note"],
            octave=best_pitch["octave"],
            pitch=best_pitch["pitch"],
            midi=best_pitch["midi"],
            pitch_confidence=best_pitch["confidence"],
            instrument_sure=sure["instrument"],
            pitch_sure=sure["pitch"],
            instrument_family=family,
            instrument_family_confidence=family_confidence,
            instrument_family_sure=family_sure,
            instrument_confidence_raw=confidence(p_inst[best["instrument"]]),
            pitch_confidence_raw=confidence(p_pitch[best["pitch"]]),
            instrument_foreignness=None if instrument_foreignness is None else round(instrument_foreignness, 3),
            pitch_period_hz=None if period is None or period.f0_hz is None else round(period.f0_hz, 2),
            pitch_cents=None if cents is None else round(cents, 1),
            candidates={
                role: [entry(role, int(j)) for j in self._candidates(role, shown[role], order[role])]
                for role in raw
                if not sure[role]
            }
            | ({"pitch": [entry("pitch", j) for j in halfway]} if halfway else {}),
            candidates_level={
                role: self.models[role].calibration.candidate_level
                for role in raw
                if not sure[role] and role not in because and self.models[role].calibration.candidate_floor > 0
            },
            not_sure_because={role: because[role] for role in ROLES if role in because},
            top_k={role: [entry(role, int(j)) for j in order[role][:top_k]] for role in ("instrument", "pitch")},
        )


# ------------------------------------------------------------------------ helpers


def require_store(tracking_uri: str | None = None) -> str:
    """The tracking URI in effect (redacted); `PredictorError` when it names a SQLite file that does not exist.

    MLflow would create an empty store there (logging its migrations) and then find no models.
    MLflow is imported only when the URI is its default (neither given nor in the environment).
    """
    from instropitch.ml.tracking import missing_sqlite_store

    uri = registry_lookup.tracking_uri(tracking_uri)
    if uri is None:
        import mlflow

        uri = mlflow.get_tracking_uri()
    if missing_sqlite_store(uri):
        raise PredictorError(f"no models: no MLflow store at {uri} (set MLFLOW_TRACKING_URI, or --from-export DIR)")
    return redact_uri(uri)


def _registry_model(client: Any, record: VersionRecord, cache_key: str, uri: str) -> tuple[bytes, dict[str, Any]]:
    """(ONNX bytes, label layout) of a registered version: from the cache, its portable copy, or converted.

    `cache_key` is the tracking URI as MLflow reports it, the key `_from_cached_versions` reads.
    """
    name, version = record.name, record.version
    cache = modelcache.entry_dir(cache_key, name, version)
    hit = modelcache.read(cache, record.run_id)
    if hit is not None:
        return hit.model, hit.layout
    try:
        with _quiet_downloads():
            entry = _download_portable(client, name, version)
    except PredictorError:
        raise
    except Exception as exc:  # download, MLmodel or Keras errors of many kinds
        raise PredictorError(f"cannot load {name} version {version} from {uri}: {_first_line(exc)}") from None
    modelcache.write(cache, entry, record.run_id)
    return entry.model, entry.layout


def _download_portable(client: Any, name: str, version: str) -> modelcache.Entry:
    import tempfile

    import mlflow
    import yaml

    from instropitch.ml.tracking import METADATA_KEY, PORTABLE_KEY

    where = f"{name} v{version}"
    base = client.get_model_version_download_uri(name, version).rstrip("/")
    with tempfile.TemporaryDirectory() as tmp:
        mlmodel = mlflow.artifacts.download_artifacts(artifact_uri=f"{base}/MLmodel", dst_path=tmp)
        metadata = (yaml.safe_load(Path(mlmodel).read_text()) or {}).get("metadata") or {}
        layout, portable = metadata.get(METADATA_KEY), metadata.get(PORTABLE_KEY)
        if not isinstance(layout, dict):
            raise PredictorError(f"{where} has no '{METADATA_KEY}' label layout in its MLmodel metadata")
        if isinstance(portable, dict) and portable.get("format") == "onnx" and portable.get("file"):
            local = mlflow.artifacts.download_artifacts(artifact_uri=f"{base}/{portable['file']}", dst_path=tmp)
            data = Path(local).read_bytes()
            if portable.get("sha256") and hashlib.sha256(data).hexdigest() != portable["sha256"]:
                raise PredictorError(f"{where}: its ONNX copy does not match the checksum logged with it")
            return modelcache.Entry(model=data, layout=layout, converted=False)
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        raise PredictorError(
            f"{where} was registered before portable models and converting its Keras model needs TensorFlow, "
            "which this install lacks: predict from it once where TensorFlow is installed (that caches the "
            "converted copy), or use an export folder written there (instropitch export --out DIR)"
        )
    LOG.warning(
        "%s was registered before portable models: converting its Keras model to ONNX (needs TensorFlow, "
        "takes a while); the result is cached for the next start",
        where,
    )
    from instropitch.ml import registry

    loaded = registry.load_model(f"models:/{name}/{version}")
    return modelcache.Entry(model=_converted(loaded.model, where), layout=dict(loaded.info), converted=True)


def _load_keras(path: Path) -> Any:
    try:
        from instropitch.ml.cnn import configure_tensorflow

        configure_tensorflow()
        import keras
    except ImportError as exc:
        raise PredictorError(f"{path} is a Keras model and this install has no TensorFlow: {exc}") from None
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many kinds for a bad file
        raise PredictorError(f"{path}: cannot load the Keras model: {_first_line(exc)}") from None


@contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No MLflow "Downloading artifacts" bars on stderr (they would mix with the CLI's output)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


def redact_uri(uri: str) -> str:
    """`scheme://user:secret@host/...` -> `scheme://***@host/...`: locations are shown to users."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
