"""Which instrument plays this note, and which note is it? Both CNNs behind one call.

A `Predictor` holds the pitch and the instrument Keras models, the label layout each was
trained with and the `FeatureConfig` their spectrograms must be computed with. It is
loaded from one of:

* the MLflow model registry: `instropitch-pitch` and `instropitch-instrument` at the
  alias `champion` (default), another alias, or a given version of each
  (`Predictor.from_registry(versions={"pitch": "3"})`). The features come from the preset
  each model logged in its label layout (`features`), checked against its `feature_digest`;
* an export folder written by `Predictor.export(dir)` / `instropitch export --out DIR`:
  both `.keras` models, `labels.json`, `features.json` (the full feature config, so no
  preset lookup) and `manifest.json` (versions, test accuracies). Loading it needs no
  MLflow server (`Predictor.from_export(dir)`).

`Predictor.load()` picks an export when given one (or `$INSTROPITCH_EXPORT_DIR` is set)
and the registry otherwise. Prediction reads only the seconds of audio the spectrograms
need (`features.compute_features`); `predict_many` computes a batch of spectrograms and
calls each model once per batch. Any format `audio` reads is accepted (WAV, FLAC, MP3, ...).
A file that cannot be used (not audio, truncated, silent, ...) gives a `Prediction` with
`error` set, never an exception; one read despite its header (a WAV written to a pipe)
carries the decoder's `warnings`.

TensorFlow, Keras and MLflow are imported inside the functions: the Airflow API server
imports this module through the plugin and must not pay for TensorFlow until a request.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from instropitch import audio
from instropitch.audio.features import FeatureConfig, SpectrogramConfig, compute_features, get_preset
from instropitch.ml.calibration import Calibration
from instropitch.serving.export import FEATURES_FILENAME, model_file, read_export, write_export
from instropitch.serving.results import ModelInfo, Prediction, PredictorError, confidence
from instropitch.tinysol import INSTRUMENT_BY_ABBR, midi_to_note_octave, midi_to_pitch

ROLES: tuple[str, ...] = ("pitch", "instrument")
"""The two models, by spec name (registered as `instropitch-pitch`, `instropitch-instrument`)."""
ROLE_LABEL = {"pitch": "midi", "instrument": "instrument"}
"""What each role must predict (the `label` of its model spec)."""

CHAMPION = "champion"
ENV_EXPORT_DIR = "INSTROPITCH_EXPORT_DIR"
"""An export folder to serve instead of the registry (read by `Predictor.load`)."""

DEFAULT_TOP_K = 3
NOT_SURE_CANDIDATES = 3
"""How many answers a "not sure" verdict lists."""
DEFAULT_BATCH_SIZE = 64
_MODEL_CHUNK = 256


# ----------------------------------------------------------------------- results


# ------------------------------------------------------------------------ models


@dataclass
class _Model:
    """One Keras CNN with the label layout it was trained with."""

    keras: Any
    label: str
    input: str
    class_names: list[str]
    class_values: list[Any]
    input_shape: tuple[int, int]
    layout: dict[str, Any]
    info: ModelInfo
    calibration: Calibration = field(default_factory=Calibration)
    """From the layout (`ml.calibration`); identity for versions trained before calibration existed."""

    def _compiled(self) -> Any:
        """The model as one traced TensorFlow graph for any batch size.

        Calling a Keras 3 model eagerly runs its layers one by one in Python (~1 ms each);
        the traced graph answers a single file in a few ms (bench/RESULTS.md, predict).
        """
        fn = self.__dict__.get("_fn")
        if fn is None:
            import tensorflow as tf

            spec = tf.TensorSpec([None, *self.input_shape], tf.float32)
            model = self.keras
            fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
            self.__dict__["_fn"] = fn
        return fn

    def proba(self, x: np.ndarray) -> np.ndarray:
        """(N, frames, bands) -> (N, n_classes); the traced graph in chunks (no `predict` loop)."""
        if len(x) == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        fn = self._compiled()
        x = np.asarray(x, dtype=np.float32)
        parts = [np.asarray(fn(x[i : i + _MODEL_CHUNK])) for i in range(0, len(x), _MODEL_CHUNK)]
        return np.concatenate(parts).astype(np.float64)


def _model_from_layout(role: str, keras_model: Any, layout: Mapping[str, Any], info: ModelInfo, where: str) -> _Model:
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
    if model_input not in ("pitch", "instrument"):
        raise PredictorError(f"{where}: unknown input {model_input!r}; expected 'pitch' or 'instrument'")
    outputs = int(keras_model.output_shape[-1])
    if outputs != len(names):
        raise PredictorError(f"{where}: the model has {outputs} outputs but its layout names {len(names)} classes")
    values = class_values(label, names)
    if label == "instrument":
        unknown = [v for v in values if v not in INSTRUMENT_BY_ABBR]
        if unknown:
            raise PredictorError(f"{where}: unknown instrument classes {unknown}")
    calibration = Calibration.from_dict(layout.get("calibration"))
    return _Model(keras_model, label, model_input, names, list(values), shape, dict(layout), info, calibration)


def _combined_features(
    models: Mapping[str, _Model], configs: Mapping[str, SpectrogramConfig], fallback: FeatureConfig
) -> FeatureConfig:
    """One `FeatureConfig` whose `pitch`/`instrument` slots are what the models reading them need.

    `configs[role]` is the config of the spectrogram `role`'s model reads (its `input`). A
    slot no model reads keeps `fallback`'s (it is computed and unused).
    """
    slots: dict[str, SpectrogramConfig] = {}
    for role, model in models.items():
        cfg = configs[role]
        if model.input in slots and slots[model.input] != cfg:
            raise PredictorError(
                f"both models read the {model.input!r} spectrogram but were trained on different settings of it"
            )
        slots[model.input] = cfg
        if tuple(cfg.shape) != model.input_shape:
            raise PredictorError(
                f"the {role} model reads spectrograms of shape {model.input_shape}, its feature config "
                f"gives {cfg.shape}: the features changed since training"
            )
    return FeatureConfig(
        pitch=slots.get("pitch", fallback.pitch), instrument=slots.get("instrument", fallback.instrument)
    )


# --------------------------------------------------------------------- predictor


class Predictor:
    """Both CNNs, their class layouts and the feature config they were trained on."""

    def __init__(self, pitch: _Model, instrument: _Model, features: FeatureConfig, *, source: str, location: str):
        self.pitch_model = pitch
        self.instrument_model = instrument
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
        `$MLFLOW_TRACKING_URI`.
        """
        import mlflow

        from instropitch.ml import registry

        unknown = sorted(set(versions or {}) - set(ROLES))
        if unknown:
            raise PredictorError(f"unknown model(s) {unknown}; known: {', '.join(ROLES)}")
        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        uri = require_store()
        client = mlflow.MlflowClient()
        models: dict[str, _Model] = {}
        configs: dict[str, SpectrogramConfig] = {}
        presets: dict[str, FeatureConfig] = {}
        for role in ROLES:
            name = registry.registered_name(role)
            wanted = str((versions or {}).get(role) or f"@{alias}")
            try:
                if wanted.startswith("@"):
                    used_alias: str | None = wanted[1:]
                    mv = client.get_model_version_by_alias(name, used_alias)
                else:
                    used_alias = None
                    mv = client.get_model_version(name, wanted)
            except Exception as exc:  # MlflowException, or a driver / HTTP error under it
                code = getattr(exc, "error_code", "")
                if code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise PredictorError(f"cannot read the model registry at {uri}: {_first_line(exc)}") from None
                what = f"alias {wanted[1:]!r}" if wanted.startswith("@") else f"version {wanted}"
                raise PredictorError(
                    f"no {what} of registered model {name!r} at {uri} ({_first_line(exc)}); "
                    "train and promote one (the training DAG), pick another with --model-version, "
                    "or predict from an export with --from-export DIR"
                ) from None
            version = str(mv.version)
            try:
                with _quiet_downloads():
                    loaded = registry.load_model(f"models:/{name}/{version}")
            except Exception as exc:  # download, MLmodel or Keras errors of many kinds
                raise PredictorError(f"cannot load {name} version {version} from {uri}: {_first_line(exc)}") from None
            tags = dict(mv.tags or {})
            score = tags.get(registry.TAG_NEW_SCORE) or tags.get("test_accuracy")
            layout = dict(loaded.info)
            info = ModelInfo(
                role=role,
                registered_model=name,
                version=version,
                alias=used_alias,
                test_accuracy=float(score) if score else None,
                run_id=mv.run_id,
                source_uri=f"models:/{name}/{version}",
                feature_preset=layout.get("features"),
                feature_digest=layout.get("feature_digest") or None,
                data_digest=layout.get("data_digest") or None,
            )
            where = f"{name} v{version}"
            model = _model_from_layout(role, loaded.model, layout, info, where)
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
            models[role] = model
            configs[role] = getattr(preset, model.input)
            presets[role] = preset
        features = _combined_features(models, configs, presets["pitch"])
        return cls(models["pitch"], models["instrument"], features, source="registry", location=uri)

    @classmethod
    def from_export(cls, directory: str | os.PathLike) -> Predictor:
        """Load a folder written by `export` (no MLflow involved)."""
        from instropitch.ml.cnn import configure_tensorflow

        root = Path(directory)
        manifest, layouts, features = read_export(root)

        configure_tensorflow()
        import keras

        models: dict[str, _Model] = {}
        for role in ROLES:
            entry = (manifest.get("models") or {}).get(role)
            if not entry or role not in layouts:
                raise PredictorError(f"{root}: the export has no {role} model")
            path = model_file(root, role, entry)
            try:
                keras_model = keras.saving.load_model(path, compile=False)
            except Exception as exc:  # Keras raises many kinds for a bad file
                raise PredictorError(f"{path}: cannot load the Keras model: {_first_line(exc)}") from None
            known = {k: entry.get(k) for k in ModelInfo.__dataclass_fields__ if k != "role"}
            info = ModelInfo(role=role, **known)
            models[role] = _model_from_layout(role, keras_model, layouts[role], info, str(path))
        configs = {role: getattr(features, model.input) for role, model in models.items()}
        combined = _combined_features(models, configs, features)
        if combined != features:
            raise PredictorError(f"{root}: {FEATURES_FILENAME} does not fit the models' inputs")
        return cls(models["pitch"], models["instrument"], features, source="export", location=str(root.resolve()))

    # ------------------------------------------------------------------ export

    def export(self, out_dir: str | os.PathLike) -> Path:
        """Write a self-contained folder `from_export` can load (see `serving.export`); returns its path."""
        return write_export(
            out_dir,
            models={role: (m.keras.save, m.layout, m.info.to_dict()) for role, m in self.models.items()},
            features=self.features,
            exported_from={"source": self.source, "location": redact_uri(self.location)},
        )

    # --------------------------------------------------------------- describing

    @property
    def models(self) -> dict[str, _Model]:
        return {"pitch": self.pitch_model, "instrument": self.instrument_model}

    def describe(self) -> dict[str, Any]:
        """Where the models come from, their versions and test accuracies, the feature digest."""
        return {
            "source": self.source,
            "location": redact_uri(self.location),
            "models": {role: model.info.to_dict() for role, model in self.models.items()},
            "feature_digest": self.features.digest(),
            "input_shapes": {role: list(model.input_shape) for role, model in self.models.items()},
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
        inputs: dict[str, list[np.ndarray]] = {"pitch": [], "instrument": []}
        for i, (name, source) in enumerate(batch):
            try:
                with audio.open_source(source, name) as src:
                    info = audio.read_info(src, max_duration=max_duration)
                    feats = compute_features(src, self.features, info=info)
            except (audio.AudioError, OSError, ValueError, TypeError) as exc:
                results[i] = Prediction.failure(name, exc)
                if progress is not None:
                    progress(name)
                continue
            good.append(i)
            if info.warning:
                warnings[i] = [info.warning]
            inputs["pitch"].append(feats.pitch)
            inputs["instrument"].append(feats.instrument)
            if progress is not None:
                progress(name)
        if good:
            stacked = {k: np.stack(v).astype(np.float32, copy=False) for k, v in inputs.items()}
            with self._lock:
                p_pitch = self.pitch_model.proba(stacked[self.pitch_model.input])
                p_inst = self.instrument_model.proba(stacked[self.instrument_model.input])
            k = max(0, int(top_k))
            for row, i in enumerate(good):
                result = self._prediction(batch[i][0], p_pitch[row], p_inst[row], k)
                result.warnings = warnings.get(i, [])
                if keep_spectrograms:
                    result.spectrograms = {"pitch": stacked["pitch"][row], "instrument": stacked["instrument"][row]}
                results[i] = result
        return [r for r in results if r is not None]

    def _prediction(self, file: str, p_pitch: np.ndarray, p_inst: np.ndarray, top_k: int) -> Prediction:
        """The answer from both models' raw probabilities: calibrated, sure or not, with alternatives."""
        raw = {"pitch": p_pitch, "instrument": p_inst}
        shown = {role: self.models[role].calibration.apply(p[None, :])[0] for role, p in raw.items()}
        order = {role: np.argsort(-p, kind="stable") for role, p in shown.items()}

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
        sure = {role: bool(shown[role][best[role]] >= self.models[role].calibration.threshold) for role in raw}
        best_inst, best_pitch = entry("instrument", best["instrument"]), entry("pitch", best["pitch"])
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
            instrument_confidence_raw=confidence(p_inst[best["instrument"]]),
            pitch_confidence_raw=confidence(p_pitch[best["pitch"]]),
            candidates={
                role: [entry(role, int(j)) for j in order[role][:NOT_SURE_CANDIDATES]] for role in raw if not sure[role]
            },
            top_k={role: [entry(role, int(j)) for j in order[role][:top_k]] for role in ("instrument", "pitch")},
        )


# ------------------------------------------------------------------------ helpers


def require_store(tracking_uri: str | None = None) -> str:
    """The tracking URI in effect (redacted); `PredictorError` when it names a SQLite file that does not exist.

    MLflow would create an empty store there (logging its migrations) and then find no models.
    """
    import mlflow

    from instropitch.ml.tracking import missing_sqlite_store

    uri = tracking_uri or mlflow.get_tracking_uri()
    if missing_sqlite_store(uri):
        raise PredictorError(f"no models: no MLflow store at {uri} (set MLFLOW_TRACKING_URI, or --from-export DIR)")
    return redact_uri(uri)


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
