"""The export folder: both models and all they need to predict, with no MLflow involved.

Layout (format `instropitch-export`, version 2): `pitch.onnx`, `instrument.onnx` (the
portable models: no TensorFlow needed), `labels.json` (each model's label layout),
`features.json` (the full feature config, so no preset lookup) and `manifest.json` (format,
versions, test accuracies, where it came from). Version 1 held `.keras` files; it still
loads (converted on load, where TensorFlow is installed).
`write_export` builds the folder beside its destination and renames it into place, so a
reader never sees half an export; `read_export` checks the manifest before anything loads.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from instropitch.audio.features import FeatureConfig
from instropitch.serving.results import PredictorError

EXPORT_FORMAT = "instropitch-export"
EXPORT_VERSION = 2
MANIFEST_FILENAME = "manifest.json"
LABELS_FILENAME = "labels.json"
FEATURES_FILENAME = "features.json"


def is_export(path: Path) -> bool:
    """Whether `path` holds a manifest of this format (so replacing it loses nothing else)."""
    try:
        return json.loads((path / MANIFEST_FILENAME).read_text()).get("format") == EXPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_export(root: Path) -> tuple[dict[str, Any], dict[str, Any], FeatureConfig]:
    """(manifest, label layouts by role, feature config) of an export; `PredictorError` says what is wrong."""
    manifest_path = root / MANIFEST_FILENAME
    if not manifest_path.is_file():
        raise PredictorError(f"{root} is not an instropitch export: no {MANIFEST_FILENAME}")
    try:
        manifest = json.loads(manifest_path.read_text())
        layouts = json.loads((root / LABELS_FILENAME).read_text())
        features = FeatureConfig.from_dict(json.loads((root / FEATURES_FILENAME).read_text()))
    except (OSError, ValueError) as exc:
        raise PredictorError(f"{root}: cannot read the export: {exc}") from None
    version = manifest.get("version") if isinstance(manifest, dict) else None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != EXPORT_FORMAT
        or not isinstance(version, int)
        or version > EXPORT_VERSION
    ):
        raise PredictorError(
            f"{root}: {MANIFEST_FILENAME} is not a version {EXPORT_VERSION} {EXPORT_FORMAT} manifest "
            f"(format {manifest.get('format') if isinstance(manifest, dict) else None!r}, version {version!r})"
        )
    return manifest, layouts, features


def model_file(root: Path, role: str, entry: Mapping[str, Any]) -> Path:
    """The file of `role`'s model, always inside the export (a manifest cannot point elsewhere)."""
    return root / Path(str(entry.get("file") or f"{role}.onnx")).name


def write_export(
    out_dir: str | os.PathLike,
    *,
    models: Mapping[str, tuple[bytes, Mapping[str, Any], Mapping[str, Any]]],
    features: FeatureConfig,
    exported_from: Mapping[str, str],
) -> Path:
    """Write an export to `out_dir`; returns its path.

    `models` maps a role to (its ONNX graph, its label layout, its `ModelInfo` as a dict). An existing export at `out_dir` is replaced; any other
    non-empty folder is refused.
    """
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise PredictorError(f"{out} exists and is not a folder")
        if any(out.iterdir()) and not is_export(out):
            raise PredictorError(f"{out} is a non-empty folder that is not an instropitch export; not replacing it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; an export is meant to be shared
        manifest_models: dict[str, Any] = {}
        layouts: dict[str, Any] = {}
        for role, (onnx, layout, info) in models.items():
            filename = f"{role}.onnx"
            (staging / filename).write_bytes(onnx)
            layouts[role] = _jsonable(layout)
            manifest_models[role] = {**info, "file": filename, "format": "onnx"}
        (staging / LABELS_FILENAME).write_text(json.dumps(layouts, indent=1))
        (staging / FEATURES_FILENAME).write_text(json.dumps(features.to_dict(), indent=1))
        manifest = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "exported_from": dict(exported_from),
            "feature_digest": features.digest(),
            "versions": _package_versions(),
            "models": manifest_models,
        }
        (staging / MANIFEST_FILENAME).write_text(json.dumps(manifest, indent=1))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def _package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("instropitch", "onnxruntime", "numpy", "mlflow", "mlflow-skinny"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out
