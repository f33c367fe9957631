"""The runtime of the portable models: an ONNX graph run by ONNX Runtime, no TensorFlow.

ONNX Runtime was chosen over LiteRT (bench/RESULTS.md, "Portable models"): same parity and
import time, a faster batch, fewer dependencies, and any batch size without re-allocating.
`onnxruntime` is imported when a model loads, not with this module.

Threads: `$INSTROPITCH_ORT_THREADS` (default: up to 2) for one operator; operators run one
after another (the graphs are a straight chain of layers). Idle threads sleep instead of
spinning: on 2 shared cores a spinning pool takes CPU from the feature threads and everyone else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

ENV_THREADS = "INSTROPITCH_ORT_THREADS"
PORTABLE_FORMAT = "onnx"


class PortableModelError(RuntimeError):
    """The file is not an ONNX graph this runtime can run, or not one of ours (one float input, one output)."""


class OnnxModel:
    """One ONNX graph: (N, frames, bands) float32 spectrograms -> (N, n_classes) probabilities (and (N,) foreignness)."""

    def __init__(self, model: bytes | str | os.PathLike, *, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or _default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # no warnings on stderr: the CLI's output stays clean
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = model if isinstance(model, bytes) else str(Path(model))
        try:
            self._session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime raises its own kinds for bad files
            raise PortableModelError(f"not a loadable ONNX model: {str(exc).strip().splitlines()[0][:300]}") from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        shapes = [len(o.shape) for o in outputs]
        if len(inputs) != 1 or len(inputs[0].shape) != 3 or shapes not in ([2], [2, 1]):
            raise PortableModelError(
                f"expected one (N, frames, bands) input, one (N, classes) output and maybe an (N,) "
                f"foreignness, got inputs {[(i.name, i.shape) for i in inputs]} and outputs "
                f"{[(o.name, o.shape) for o in outputs]}"
            )
        self._input = inputs[0].name
        self.input_shape: tuple[Any, ...] = tuple(inputs[0].shape[1:])
        self.n_outputs: Any = outputs[0].shape[-1]
        self.answers_foreignness = len(outputs) == 2
        """Whether the graph answers each note's foreignness (`ml.foreignness`) beside its probabilities."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.answer(x)[0]

    def answer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities, foreignness or None) of a batch."""
        outputs = self._session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})
        return outputs[0], (outputs[1] if self.answers_foreignness else None)


def _default_threads() -> int:
    configured = os.environ.get(ENV_THREADS, "").strip()
    if configured:
        return max(1, int(configured))
    return max(1, min(2, os.cpu_count() or 1))
