"""Keras CNN -> ONNX: the portable copy of every model, so prediction needs no TensorFlow.

Conversion is `tf2onnx.convert.from_keras` (opset 17), one input `spectrogram` (N, frames,
bands) float32, one output `probabilities` (N, n_classes). Keras's own
`model.export(format="onnx")` is not used: on Keras 3.15 + TF 2.21 it turns the baked-in
normalisation constants into extra graph inputs (bench/RESULTS.md, "Portable models").
`to_onnx` checks the converted graph against the Keras model before returning it, so a
version is never registered with a portable copy that answers differently.

TensorFlow and tf2onnx are imported inside the functions (the training DAG's parser imports
`ml.training`, which imports this module).
"""

from __future__ import annotations

from typing import Any

import numpy as np

ONNX_OPSET = 17
INPUT_NAME = "spectrogram"
OUTPUT_NAME = "probabilities"
PARITY_TOLERANCE = 1e-4
"""Largest |Keras - ONNX| probability accepted at conversion (measured: below 1e-6)."""


class ConversionError(RuntimeError):
    """The Keras model could not be converted, or the converted graph answers differently."""


def to_onnx(model: Any, *, check: np.ndarray | None = None) -> bytes:
    """The serialized ONNX graph of `model`; with `check` (a batch of inputs), parity is verified first."""
    from instropitch.ml.cnn import configure_tensorflow

    configure_tensorflow()
    import tensorflow as tf
    import tf2onnx

    shape = tuple(int(n) for n in model.input_shape[1:])
    signature = (tf.TensorSpec((None, *shape), tf.float32, name=INPUT_NAME),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=ONNX_OPSET)
    except Exception as exc:  # tf2onnx raises many kinds
        raise ConversionError(f"tf2onnx could not convert the model: {exc}") from exc
    _name_output(proto)
    data = proto.SerializeToString()
    if check is not None and len(check):
        x = np.asarray(check, dtype=np.float32)
        expected = np.asarray(model.predict(x, verbose=0), dtype=np.float64)
        got = run_onnx(data, x)
        diff = float(np.max(np.abs(got - expected)))
        if got.shape != expected.shape or diff > PARITY_TOLERANCE:
            raise ConversionError(
                f"the ONNX copy answers differently from the Keras model: shape {got.shape} vs "
                f"{expected.shape}, largest probability difference {diff:.2e} (> {PARITY_TOLERANCE})"
            )
    return data


def run_onnx(data: bytes, x: np.ndarray) -> np.ndarray:
    """Probabilities of a serialized ONNX graph on `x` (float64): for checks, not serving."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: np.asarray(x, np.float32)})[0], np.float64)


def _name_output(proto: Any) -> None:
    """Call the graph's single output `probabilities` (tf2onnx names it after the last layer)."""
    old = proto.graph.output[0].name
    if old == OUTPUT_NAME:
        return
    for node in proto.graph.node:
        node.output[:] = [OUTPUT_NAME if name == old else name for name in node.output]
        node.input[:] = [OUTPUT_NAME if name == old else name for name in node.input]
    proto.graph.output[0].name = OUTPUT_NAME
