"""What the registry served, kept on disk: the second start from `models:/...@champion` downloads nothing.

A registered version's artifacts never change, so its ONNX copy and label layout are kept
under `$INSTROPITCH_CACHE` (default `$XDG_CACHE_HOME/instropitch`, i.e. ~/.cache/instropitch)
in `registry/<tracking store hash>/<model name>/<version>/`. An entry is used only when the
version still comes from the same run and the file still has its checksum; anything else
is a miss (and is rewritten). Entries are written beside their place and renamed in, so a
reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_CACHE = "INSTROPITCH_CACHE"
MODEL_FILE = "model.onnx"
ENTRY_FILE = "entry.json"


def cache_root() -> Path:
    configured = os.environ.get(ENV_CACHE, "").strip()
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "instropitch"


def entry_dir(tracking_uri: str, name: str, version: str) -> Path:
    store = hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]
    return cache_root() / "registry" / store / _safe(name) / _safe(version)


@dataclass(frozen=True)
class Entry:
    model: bytes
    layout: dict[str, Any]
    converted: bool
    """Made here from the Keras model (a version registered before portable copies)."""


def read(directory: Path, run_id: str | None) -> Entry | None:
    try:
        meta = json.loads((directory / ENTRY_FILE).read_text())
        model = (directory / MODEL_FILE).read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("run_id") != run_id:
        return None
    if hashlib.sha256(model).hexdigest() != meta.get("sha256") or not isinstance(meta.get("layout"), dict):
        return None
    return Entry(model=model, layout=meta["layout"], converted=bool(meta.get("converted")))


def write(directory: Path, entry: Entry, run_id: str | None) -> None:
    """Store `entry`; a cache that cannot be written (read-only home, full disk) only costs the next start."""
    meta = {
        "run_id": run_id,
        "sha256": hashlib.sha256(entry.model).hexdigest(),
        "layout": entry.layout,
        "converted": entry.converted,
    }
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    except OSError:
        return
    try:
        (staging / MODEL_FILE).write_bytes(entry.model)
        (staging / ENTRY_FILE).write_text(json.dumps(meta, indent=1))
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)


def _safe(part: str) -> str:
    """A path component from a model name or version (never `..` or a separator)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in part).strip(".")
    return cleaned or "_"
