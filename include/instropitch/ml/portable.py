"""Keras CNN -> ONNX: the portable copy of every model, so prediction needs no TensorFlow.

Conversion is `tf2onnx.convert.from_keras` (opset 17), one input `spectrogram` (N, frames,
bands) float32, the output `probabilities` (N, n_classes) and, in models that answer it, the
note's `foreignness` (N,). Keras's own
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

from instropitch.ml.foreignness import OUTPUT_NAME as FOREIGNNESS_OUTPUT

ONNX_OPSET = 17
INPUT_NAME = "spectrogram"
OUTPUT_NAME = "probabilities"
OUTPUT_NAMES = (OUTPUT_NAME, FOREIGNNESS_OUTPUT)
"""The outputs in order; the second only in models that answer it (`ml.foreignness`)."""
PARITY_TOLERANCE = 1e-4
"""Largest |Keras - ONNX| difference accepted at conversion (relative above 1; measured: below 1e-6)."""


class ConversionError(RuntimeError):
    """The Keras model could not be converted, or the converted graph answers differently."""


def to_onnx(model: Any, *, check: np.ndarray | None = None) -> bytes:
    """The serialized ONNX graph of `model`; with `check` (a batch of inputs), parity is verified first.

    A model with a second output (`ml.foreignness.with_foreignness`: one number per note) keeps
    it as `foreignness`, checked like the probabilities.
    """
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
    _name_outputs(proto)
    data = proto.SerializeToString()
    if check is not None and len(check):
        x = np.asarray(check, dtype=np.float32)
        expected = model.predict(x, verbose=0)
        expected = expected if isinstance(expected, list | tuple) else [expected]
        got = run_onnx_outputs(data, x)
        for name, want, have in zip(OUTPUT_NAMES, expected, got, strict=False):
            want = np.asarray(want, dtype=np.float64)
            diff = float(np.max(np.abs(have - want) / np.maximum(1.0, np.abs(want))))
            if have.shape != want.shape or diff > PARITY_TOLERANCE:
                raise ConversionError(
                    f"the ONNX copy answers differently from the Keras model: {name} shape {have.shape} vs "
                    f"{want.shape}, largest difference {diff:.2e} (> {PARITY_TOLERANCE})"
                )
        if len(got) != len(expected):
            raise ConversionError(f"the ONNX copy has {len(got)} outputs, the Keras model {len(expected)}")
    return data


def run_onnx(data: bytes, x: np.ndarray) -> np.ndarray:
    """Probabilities of a serialized ONNX graph on `x` (float64): for checks, not serving."""
    return run_onnx_outputs(data, x)[0]


def run_onnx_outputs(data: bytes, x: np.ndarray) -> list[np.ndarray]:
    """Every output of a serialized ONNX graph on `x` (float64), in order."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: np.asarray(x, np.float32)})
    return [np.asarray(out, np.float64) for out in outputs]


def _name_outputs(proto: Any) -> None:
    """Call the graph's outputs `probabilities` (and `foreignness`): tf2onnx names them after their layers."""
    for output, new in zip(proto.graph.output, OUTPUT_NAMES, strict=False):
        old = output.name
        if old == new:
            continue
        for node in proto.graph.node:
            node.output[:] = [new if name == old else name for name in node.output]
            node.input[:] = [new if name == old else name for name in node.input]
        output.name = new
