"""Both CNNs and the feature code as one MLflow pyfunc model: `models:/instropitch@champion`.

`InstroPitchModel` wraps a `Predictor` loaded from an export folder (see
`predict.Predictor.export`) that is logged as the model's artifact `export`, so the
logged model holds both portable (ONNX) models, their label layouts and the feature
config, needs no registry lookup when it loads and no TensorFlow when it predicts. Anything that speaks pyfunc can use it:
`mlflow.pyfunc.load_model`, `mlflow models serve -m models:/instropitch@champion`, batch
scoring.

Input: a DataFrame with a column `wav_base64` (the WAV file's bytes, base64) or `path`
(a WAV file the scoring process can read), one note per row. Output: one row per input
row with `instrument`, `instrument_abbr`, `pitch`, `note`, `octave`, `midi`,
`instrument_confidence`, `pitch_confidence` (calibrated), `instrument_sure`, `pitch_sure`
(False: below the model's "not sure" threshold), `instrument_family` and `instrument_family_sure`
(the family answer, sure by its own threshold), `pitch_cents` (how far the note sounds from the note named; None
where its period did not say), `not_sure_because` (answer -> why a check of the audio made it not
sure whatever its confidence, whose number then says nothing of the file; empty for most notes), `warnings` (what a
user should know of the file: narrow-band audio, several notes, a glide, no pitched note, a chord, a note between
two, a plucked or struck note, a short note, a pure tone, mains hum, a note above the highest one the pitch model
names; a list, empty for most notes)
and `error` (None, or why that row could not be analysed; its other columns are then None).

`register_pyfunc()` logs it (from the current champions, or from a given export) as
registered model `instropitch` and gives the new version the alias `champion`.

The logged model loads `instropitch` from the scoring environment: serve it with
`--env-manager local` from an environment where this package is installed.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from instropitch import audio
from instropitch.ml.tracking import TAG_KIND, ensure_experiment, pip_requirements

PYFUNC_MODEL_NAME = "instropitch"
ARTIFACT_KEY = "export"
INPUT_COLUMNS: tuple[str, ...] = ("wav_base64", "path")
OUTPUT_COLUMNS: tuple[str, ...] = (
    "instrument",
    "instrument_abbr",
    "pitch",
    "note",
    "octave",
    "midi",
    "instrument_confidence",
    "pitch_confidence",
    "instrument_sure",
    "pitch_sure",
    "instrument_family",
    "instrument_family_sure",
    "pitch_cents",
    "not_sure_because",
    "warnings",
    "error",
)
MAX_WAV_BYTES = 50 * 1024 * 1024
"""Largest decoded `wav_base64` accepted per row."""
ENV_ALLOW_PATHS = "INSTROPITCH_PYFUNC_ALLOW_PATHS"
"""Set to 0 to refuse the `path` column (e.g. when the served model is reachable by others)."""


def model_signature() -> Any:
    """Input `wav_base64` / `path` (each optional, strings); output the prediction columns."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, Map, Schema

    inputs = Schema([ColSpec("string", name, required=False) for name in INPUT_COLUMNS])
    types = {
        "octave": "long",
        "midi": "long",
        "instrument_confidence": "double",
        "pitch_confidence": "double",
        "instrument_sure": "boolean",
        "pitch_sure": "boolean",
        "instrument_family_sure": "boolean",
        "pitch_cents": "double",
        "not_sure_because": Map(DataType.string),
        "warnings": Array("string"),
    }
    optional = ("pitch_cents", "not_sure_because", "warnings", "error")
    outputs = Schema(
        [ColSpec(types.get(name, "string"), name, required=name not in optional) for name in OUTPUT_COLUMNS]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and value != value:  # NaN from a DataFrame
        return False
    return not (isinstance(value, str) and not value.strip())


class InstroPitchModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper: `load_context` loads the export artifact, `predict` maps rows to predictions."""

    def __init__(self) -> None:
        self._predictor = None

    def load_context(self, context: Any) -> None:
        from instropitch.serving.predictor import Predictor

        self._predictor = Predictor.from_export(context.artifacts[ARTIFACT_KEY])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        # pd.DataFrame hints: MLflow infers no schema from them (the logged signature is explicit)
        from instropitch.serving.results import Prediction

        if self._predictor is None:
            raise RuntimeError("the model is not loaded (load it with mlflow.pyfunc.load_model)")
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        unknown = [c for c in frame.columns if c not in INPUT_COLUMNS]
        if unknown or not any(c in frame.columns for c in INPUT_COLUMNS):
            raise ValueError(
                f"expected a column 'wav_base64' (base64 WAV bytes) or 'path'; got columns {list(frame.columns)}"
            )
        allow_paths = os.environ.get(ENV_ALLOW_PATHS, "1").strip().lower() not in ("0", "false", "no")
        results: list[Prediction | None] = [None] * len(frame)
        jobs: list[tuple[int, str, Any]] = []
        for i, row in enumerate(frame.to_dict(orient="records")):
            label = f"row {i}"
            wav, path = row.get("wav_base64"), row.get("path")
            if _present(wav):
                try:
                    data = base64.b64decode(str(wav).strip(), validate=True)
                except (binascii.Error, ValueError):
                    results[i] = Prediction(file=label, error="wav_base64 is not valid base64", error_type="ValueError")
                    continue
                if len(data) > MAX_WAV_BYTES:
                    results[i] = Prediction(
                        file=label, error=f"too large: {len(data):,} bytes, the limit is {MAX_WAV_BYTES:,}"
                    )
                    continue
                jobs.append((i, label, data))
            elif _present(path):
                if not allow_paths:
                    results[i] = Prediction(file=label, error=f"reading paths is disabled ({ENV_ALLOW_PATHS}=0)")
                    continue
                jobs.append((i, str(path), str(path)))
            else:
                results[i] = Prediction(file=label, error="the row has neither wav_base64 nor path")
        predictions = self._predictor.predict_many([(label, source) for _, label, source in jobs], top_k=0)
        for (i, _, _), prediction in zip(jobs, predictions, strict=True):
            results[i] = prediction
        return _frame(results)


def _frame(results: list[Any]) -> Any:
    import pandas as pd

    rows = []
    for r in results:
        if r.ok:
            rows.append({name: getattr(r, name) for name in OUTPUT_COLUMNS})
        else:
            rows.append({**dict.fromkeys(OUTPUT_COLUMNS), "error": r.error})
    # object columns: a failed row's None must stay None (not NaN, which is not JSON)
    return pd.DataFrame({name: pd.Series([row[name] for row in rows], dtype=object) for name in OUTPUT_COLUMNS})


def example_input() -> Any:
    """A one-row input example: a short synthetic A4 as base64 WAV (8 kHz, 16-bit, 0.6 s)."""
    import io

    import numpy as np
    import pandas as pd

    rate = 8000
    t = np.arange(int(0.6 * rate)) / rate
    y = sum(np.sin(2 * np.pi * 440 * n * t) / n for n in range(1, 5))
    y = 0.3 * y * np.minimum(1, t / 0.02) * np.minimum(1, (t[-1] - t) / 0.05 + 1e-3) / np.abs(y).max()
    buf = io.BytesIO()
    audio.write_wav(buf, y.astype(np.float32), rate)
    return pd.DataFrame({"wav_base64": [base64.b64encode(buf.getvalue()).decode("ascii")]})


MODEL_CODE = """\
import mlflow.models
from instropitch.serving.pyfunc import InstroPitchModel

mlflow.models.set_model(InstroPitchModel())
"""
"""The model file MLflow logs (models from code): it only names the class in the installed package."""


@dataclass(frozen=True)
class RegisteredPyfunc:
    name: str
    version: str
    model_uri: str
    run_id: str
    components: dict[str, Any]


def register_pyfunc(
    *,
    export_dir: str | os.PathLike | None = None,
    predictor: Any = None,
    versions: dict[str, str] | None = None,
    name: str = PYFUNC_MODEL_NAME,
    alias: str | None = "champion",
    tracking_uri: str | None = None,
    experiment: str = "instropitch",
) -> RegisteredPyfunc:
    """Log the combined model as registered model `name` and move `alias` to the new version.

    The CNNs come from `export_dir`, else from `predictor`, else from the registry
    (`versions`, default the `champion` of each). The version gets tags naming the
    component versions and their test accuracies.
    """
    import mlflow

    from instropitch.serving.predictor import Predictor

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        if export_dir is None:
            predictor = predictor or Predictor.from_registry(versions)
            export_dir = predictor.export(Path(tmp) / "export")
        loaded = Predictor.from_export(export_dir)
        components = loaded.describe()["models"]
        tags = {TAG_KIND: "pyfunc"}
        for role, info in components.items():
            tags[f"{role}.registered_model"] = str(info.get("registered_model") or "")
            tags[f"{role}.version"] = str(info.get("version") or "")
            if info.get("test_accuracy") is not None:
                tags[f"{role}.test_accuracy"] = f"{info['test_accuracy']:.6f}"
            if info.get("heldout_accuracy") is not None:
                tags[f"{role}.heldout_accuracy"] = f"{info['heldout_accuracy']:.6f}"
        # "Models from code": MLflow stores this two-line file instead of a cloudpickle of the class.
        code = Path(tmp) / "instropitch_pyfunc.py"
        code.write_text(MODEL_CODE)
        experiment_id = ensure_experiment(experiment)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"pyfunc-{name}", tags=tags) as run:
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(code),
                artifacts={ARTIFACT_KEY: str(export_dir)},
                signature=model_signature(),
                input_example=example_input(),
                registered_model_name=name,
                pip_requirements=pip_requirements(extra=("onnxruntime", "pandas", "scipy", "soxr"), keras=False),
                metadata={"instropitch": {"components": components, "feature_digest": loaded.features.digest()}},
            )
        version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        if key != TAG_KIND:
            client.set_model_version_tag(name, version, key, value)
    if alias:
        client.set_registered_model_alias(name, alias, version)
    return RegisteredPyfunc(
        name=name, version=version, model_uri=f"models:/{name}/{version}", run_id=run.info.run_id, components=components
    )
