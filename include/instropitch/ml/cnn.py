"""The CNN a `ModelSpec` describes, and the training-only augmentation of its inputs.

The saved model holds only built-in Keras layers (augmentation is a `tf.data` map applied
to the training set, not a layer), so anyone can load it with plain `keras.saving.load_model`
or `mlflow.keras.load_model` without importing this package first.

TensorFlow and Keras are imported inside the functions: the Airflow scheduler imports this
module while parsing DAGs and must not pay for TensorFlow.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from instropitch.modelspec import MIXUP_ALPHA, Augmentation, ModelSpec

if TYPE_CHECKING:
    import keras


def configure_tensorflow(threads: int | None = None) -> None:
    """Quiet TensorFlow's logs, use oneDNN kernels, and size its thread pools to the machine (2 cores here).

    TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 and newer; on
    an AVX2 CPU (this machine) they halve a training epoch (bench/RESULTS.md, "Training
    speed"). Both settings act only before TensorFlow is first imported or runs its first
    op; later calls keep whatever is already set, which is harmless.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    threads = threads or int(os.environ.get("INSTROPITCH_TF_THREADS", 0)) or (os.cpu_count() or 1)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:
        pass  # already initialised in this process


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""CPU flags (Linux `/proc/cpuinfo`) of hardware that computes bfloat16 itself; elsewhere it is emulated, slowly."""


def compute_policy(precision: str, cpu_flags: set[str] | None = None) -> str:
    """The Keras dtype policy a fit computes in: `training.precision`, with `auto` read off the CPU.

    Mixed bfloat16 halves the work of every multiply-add where the CPU has bfloat16 units (here 1.6x
    faster steps, 1.35x faster fits, and 1.2 points lower held out: bench/RESULTS.md, "Several networks
    averaged"); where it has none, Keras emulates it and is slower.
    """
    if precision != "auto":
        return precision
    flags = cpu_flags if cpu_flags is not None else _cpu_flags()
    return "mixed_bfloat16" if flags & set(BF16_CPU_FLAGS) else "float32"


def _cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (empty elsewhere, or if unreadable)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def as_float32(model: keras.Model, spec: ModelSpec) -> keras.Model:
    """`model` (fitted under any dtype policy) as the same network computing in float32, compiled.

    Mixed precision keeps float32 weights, so they copy as they are; what is saved, exported
    and served then runs anywhere, bfloat16 units or not.
    """
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    normalize = model.get_layer("standardize")
    mean, variance = (float(np.asarray(v).reshape(-1)[0]) for v in (normalize.mean, normalize.variance))
    plain = build_model(
        spec,
        tuple(int(n) for n in model.input_shape[1:]),
        int(model.output_shape[-1]),
        input_mean=mean,
        input_std=variance**0.5,
    )
    plain.set_weights(model.get_weights())
    plain.optimizer.build(plain.trainable_variables)  # saves cleanly, as a fitted model does
    return plain


def join_members(members: list[keras.Model], spec: ModelSpec) -> keras.Model:
    """One model answering the mean of `members`' logits (networks of one recipe, fitted apart).

    Each member up to its embedding (the softmax's input) becomes a layer; their embeddings are
    concatenated and read by one softmax whose weights are the members' stacked, over N. So the
    joined model keeps the shape every reader expects: an `embedding` before a `probabilities`
    softmax (`ml.foreignness`), built-in layers only.
    """
    import keras
    from keras import layers

    if len(members) == 1:
        return members[0]
    inputs = keras.Input(shape=members[0].input_shape[1:], name="spectrogram", dtype="float32")
    embeddings = [embedding_layer(m, f"member{k}")(inputs) for k, m in enumerate(members, start=1)]
    kernels, biases = zip(*(m.get_layer("probabilities").get_weights() for m in members), strict=True)
    weights = [np.concatenate(kernels) / len(members), np.mean(biases, axis=0)]
    return _read_by_softmax(inputs, layers.Concatenate(name="embedding")(embeddings), weights, members[0].name, spec)


def embedding_layer(model: keras.Model, name: str) -> keras.Model:
    """`model` up to its embedding (`foreignness.embedding_tensor`: the input of its logits), as one layer."""
    import keras

    from instropitch.ml.foreignness import embedding_tensor

    return keras.Model(model.inputs, embedding_tensor(model), name=name)


def _read_by_softmax(inputs: Any, embedding: Any, weights: list[np.ndarray], name: str, spec: ModelSpec) -> keras.Model:
    """The model `inputs` -> `embedding` -> a `probabilities` softmax holding `weights`, compiled as a fit leaves it."""
    import keras
    from keras import layers

    outputs = layers.Dense(int(weights[1].shape[0]), activation="softmax", name="probabilities")(embedding)
    model = keras.Model(inputs, outputs, name=name)
    model.get_layer("probabilities").set_weights(weights)
    compile_model(model, spec)
    model.optimizer.build(model.trainable_variables)  # saves cleanly, as a fitted model does
    return model


def average_band_shifts(model: keras.Model, spec: ModelSpec) -> keras.Model:
    """`model` answering the mean logits of its input moved by -K..K bands (`architecture.band_shift_average`).

    The model up to its embedding becomes one layer, read once per shifted copy of the input; the copies'
    embeddings are averaged (`embedding`) and read by the model's own softmax, so the mean embedding gives
    the mean logits, and every reader finds the usual `embedding` before a `probabilities` softmax
    (`ml.foreignness`). Built-in layers only. K = 0: `model` itself.
    """
    import keras
    from keras import layers

    k = spec.architecture.band_shift_average
    if not k:
        return model
    inputs = keras.Input(shape=model.input_shape[1:], name="spectrogram", dtype="float32")
    tower = embedding_layer(model, "tower")
    views = [tower(inputs if shift == 0 else shift_bands(inputs, shift)) for shift in range(-k, k + 1)]
    mean = layers.Average(name="embedding")(views)
    return _read_by_softmax(inputs, mean, model.get_layer("probabilities").get_weights(), model.name, spec)


def shift_bands(x: Any, shift: int) -> Any:
    """The spectrograms `x` (N, frames, bands) moved `shift` bands up (down if negative), the vacated bands
    filled with each one's minimum: `_shift` at a given step, in built-in layers (a saved model needs no code)."""
    from keras import layers

    frames, bands = (int(n) for n in x.shape[1:])
    name = f"shift{shift:+d}".replace("+", "up").replace("-", "down")
    negated = layers.Rescaling(-1.0, name=f"{name}_negate")(x)
    peak = layers.GlobalMaxPooling1D(name=f"{name}_peak")(
        layers.Reshape((frames * bands, 1), name=f"{name}_flat")(negated)
    )
    floor = layers.Reshape((1, 1), name=f"{name}_floor")(layers.Rescaling(-1.0, name=f"{name}_min")(peak))
    above = layers.Subtract(name=f"{name}_above_floor")([x, floor])  # the padding's zeros become the floor
    by_band = layers.Permute((2, 1), name=f"{name}_by_band")(above)
    by_band = layers.ZeroPadding1D((shift, 0) if shift > 0 else (0, -shift), name=f"{name}_pad")(by_band)
    by_band = layers.Cropping1D((0, shift) if shift > 0 else (-shift, 0), name=f"{name}_crop")(by_band)
    moved = layers.Permute((2, 1), name=f"{name}_by_frame")(by_band)
    return layers.Add(name=f"{name}_back")([moved, floor])


def build_model(
    spec: ModelSpec,
    input_shape: tuple[int, int],
    n_classes: int,
    *,
    input_mean: float = 0.0,
    input_std: float = 1.0,
    dtype_policy: str = "float32",
) -> keras.Model:
    """Input (frames, bands) -> conv blocks -> pooling -> dense + dropout -> softmax, compiled.

    `input_mean`/`input_std` (of the training spectrograms, in dB) are baked into a first
    normalisation layer so the saved model takes raw spectrograms as stored. `dtype_policy`
    (`compute_policy`) is the hidden layers' Keras dtype policy; input and softmax stay float32.
    """
    configure_tensorflow()
    import keras
    from keras import layers

    arch = spec.architecture
    frames, bands = (int(n) for n in input_shape)
    body = {"dtype": dtype_policy}
    inputs = keras.Input(shape=(frames, bands), name="spectrogram", dtype="float32")
    x = layers.Normalization(axis=None, mean=input_mean, variance=max(input_std, 1e-6) ** 2, name="standardize")(inputs)
    x = layers.Reshape((frames, bands, 1), name="add_channel", **body)(x)
    normalised = arch.batch_norm or arch.group_norm  # the normalisation's shift replaces the convolution's bias
    for i, block in enumerate(arch.conv_blocks, start=1):
        x = layers.Conv2D(
            block.filters, block.kernel, padding="same", use_bias=not normalised, name=f"conv{i}", **body
        )(x)
        if arch.batch_norm:
            x = layers.BatchNormalization(name=f"bn{i}", **body)(x)
        elif arch.group_norm:
            x = layers.GroupNormalization(arch.group_norm, name=f"gn{i}", **body)(x)
        x = layers.ReLU(name=f"relu{i}", **body)(x)
        if block.pool != (1, 1):
            # `same` padding: a short input never shrinks to zero frames.
            x = layers.MaxPooling2D(block.pool, padding="same", name=f"pool{i}", **body)(x)
    if arch.pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="global_avg", **body)(x)
    elif arch.pooling == "max":
        x = layers.GlobalMaxPooling2D(name="global_max", **body)(x)
    elif arch.pooling in ("time_avg", "time_max"):
        # Pool over the time axis only; keep (bands, channels) so frequency position survives.
        reduce = layers.AveragePooling2D if arch.pooling == "time_avg" else layers.MaxPooling2D
        x = reduce(pool_size=(x.shape[1], 1), name=arch.pooling, **body)(x)
        x = layers.Flatten(name="flatten", **body)(x)
    else:
        x = layers.Flatten(name="flatten", **body)(x)
    for i, units in enumerate(arch.dense, start=1):
        x = layers.Dense(units, activation="relu", name=f"dense{i}", **body)(x)
        if arch.dropout:
            x = layers.Dropout(arch.dropout, name=f"dropout{i}", **body)(x)
    if not arch.dense and arch.dropout:
        x = layers.Dropout(arch.dropout, name="dropout", **body)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities", dtype="float32")(x)

    model = keras.Model(inputs, outputs, name=f"instropitch_{spec.name}".replace("-", "_"))
    compile_model(model, spec)
    return model


def compile_model(model: keras.Model, spec: ModelSpec, optimizer: Any = None) -> None:
    """Adam (AdamW with the recipe's `weight_decay`; or `optimizer`) + cross-entropy + accuracy. With mixup the
    labels are soft, hence one-hot losses."""
    import keras

    if spec.training.augmentation.mixup:
        loss: Any = keras.losses.CategoricalCrossentropy()
        metric: Any = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    t = spec.training
    if optimizer is None:
        optimizer = (
            keras.optimizers.AdamW(t.learning_rate, weight_decay=t.weight_decay)
            if t.weight_decay > 0
            else keras.optimizers.Adam(t.learning_rate)
        )
    model.compile(optimizer=optimizer, loss=loss, metrics=[metric])


# --------------------------------------------------------------------- augmentation


def _shift(x: Any, max_shift: int, axis: int) -> Any:
    """Move `x` by a random whole number of steps in [-max_shift, max_shift] along `axis`,
    filling the vacated edge with the spectrogram's floor (its minimum) rather than wrapping."""
    import tensorflow as tf

    k = tf.random.uniform([], -max_shift, max_shift + 1, dtype=tf.int32)
    paddings = [[max_shift, max_shift] if a == axis else [0, 0] for a in range(2)]
    padded = tf.pad(x, paddings, constant_values=tf.reduce_min(x))
    begin = [max_shift - k if a == axis else 0 for a in range(2)]
    return tf.slice(padded, tf.stack(begin), tf.shape(x))


EQ_CURVE_KNOTS = 8
"""Knots of the random `eq_curve`: smooth enough to be a response, not a spectrum of its own."""

LOG_POWER_PER_UNIT = 3.0
"""Natural-log power per z-score unit of a dB spectrogram (ln 10 / 10 x a typical 13 dB
spread): what turns "add two sounds" into a log-sum-exp on z-scored examples."""


def _log_add(a: Any, b: Any) -> Any:
    """The spectrogram of two sounds played together, both given as z-scored dB."""
    import tensorflow as tf

    k = LOG_POWER_PER_UNIT
    return tf.math.reduce_logsumexp(tf.stack([k * a, k * b]), axis=0) / k


SIXTY_DB = 3.5
"""What `_reverb` and `_release` take for 60 dB in an example's z-score units (one is 13-17 dB of a note's spread)."""


def _reverb(x: Any) -> Any:
    """Mix in a decaying tail: each frame rings on, losing ~3.5 units (about 60 dB) per RT60.

    In the power domain a tail is a running sum of past frames with exponential decay; on
    log values that is a cumulative log-sum-exp of x[t] + t * d, minus t * d.
    """
    import tensorflow as tf

    frames = tf.cast(tf.shape(x)[0], tf.float32)
    rt60_frames = tf.random.uniform([], 4.0, 64.0)  # ~0.1-1.5 s at 23 ms per frame
    decay = SIXTY_DB / rt60_frames
    ramp = tf.range(frames)[:, None] * decay
    k = LOG_POWER_PER_UNIT
    tail = tf.math.cumulative_logsumexp(k * (x + ramp), axis=0) / k - ramp
    wet = tf.random.uniform([], -1.5, 0.3)
    return _log_add(x, tail + wet)


LOWPASS_HZ = (3400.0, 11025.0)
"""Cut-offs a `lowpass` draws from: a telephone's band edge to the features' own Nyquist (22.05 kHz audio)."""


def _lowpass(x: Any, band_hz: Any) -> Any:
    """Every band centred above a random cut-off (log-uniform over `LOWPASS_HZ`) set to the floor."""
    import tensorflow as tf

    low, high = np.log(LOWPASS_HZ)
    cutoff = tf.exp(tf.random.uniform([], float(low), float(high)))
    return tf.where(band_hz[None, :] < cutoff, x, tf.reduce_min(x))


def _acoustic(x: Any, aug: Augmentation, band_hz: Any = None) -> Any:
    """Microphone colour (tilt, uneven response), room, noise floor and band limits on one z-scored example."""
    import tensorflow as tf

    bands = tf.shape(x)[1]
    position = tf.cast(tf.range(bands), tf.float32) / tf.maximum(tf.cast(bands - 1, tf.float32), 1.0) - 0.5
    floor = tf.reduce_min(x)
    if aug.reverb:
        x = tf.cond(tf.random.uniform([]) < aug.reverb, lambda: _reverb(x), lambda: x)
    if aug.eq_tilt:
        x = x + tf.random.uniform([], -aug.eq_tilt, aug.eq_tilt) * position[None, :]
    if aug.eq_curve:
        knots = tf.random.uniform([EQ_CURVE_KNOTS], -aug.eq_curve, aug.eq_curve)
        # Piecewise-linear through the knots, spread evenly over the bands.
        where = (position + 0.5) * (EQ_CURVE_KNOTS - 1)
        low = tf.minimum(tf.cast(tf.floor(where), tf.int32), EQ_CURVE_KNOTS - 2)
        frac = where - tf.cast(low, tf.float32)
        curve = tf.gather(knots, low) * (1.0 - frac) + tf.gather(knots, low + 1) * frac
        x = x + curve[None, :]
    if aug.band_limit:
        top = tf.cast(tf.random.uniform([], 0.0, aug.band_limit) * tf.cast(bands, tf.float32), tf.int32)
        bottom = tf.cast(tf.random.uniform([], 0.0, aug.band_limit / 2) * tf.cast(bands, tf.float32), tf.int32)
        index = tf.range(bands)
        keep = tf.logical_and(index >= bottom, index < bands - top)
        x = tf.where(keep[None, :], x, tf.minimum(x, floor))
    if aug.noise_floor:
        level = floor + tf.random.uniform([], 0.0, aug.noise_floor)
        x = _log_add(x, level + 0.3 * tf.random.normal(tf.shape(x)))
    if aug.lowpass:  # last: the device records the room, the noise and all
        x = tf.cond(tf.random.uniform([]) < aug.lowpass, lambda: _lowpass(x, band_hz), lambda: x)
    return _zscored(x)


def _zscored(x: Any) -> Any:
    """One changed example z-scored again, as stored examples are."""
    import tensorflow as tf

    mean, var = tf.nn.moments(x, axes=[0, 1])
    return (x - mean) / tf.sqrt(var + 1e-6)


def _mask(x: Any, max_width: int, axis: int) -> Any:
    """SpecAugment: one random run of 0..`max_width` rows along `axis` set to the example's mean."""
    import tensorflow as tf

    size = tf.shape(x)[axis]
    width = tf.random.uniform([], 0, tf.minimum(max_width, size) + 1, dtype=tf.int32)
    start = tf.random.uniform([], 0, size - width + 1, dtype=tf.int32)
    index = tf.range(size)
    hit = tf.logical_and(index >= start, index < start + width)
    hit = hit[:, None] if axis == 0 else hit[None, :]
    return tf.where(hit, tf.reduce_mean(x), x)


LOOP_START_FRAMES = (6, 20)
"""Where a `loop` may begin (frames, ~23 ms each): after the attack, within the first half second."""
LOOP_MAX_FRAMES = 8
"""The longest loop (frames): a sample player's loop is a few periods to a few tenths of a second."""


def _loop(x: Any) -> Any:
    """The note frozen after a random frame into a repeated run of 1..`LOOP_MAX_FRAMES` of its own frames."""
    import tensorflow as tf

    frames = tf.shape(x)[0]
    start = tf.minimum(tf.random.uniform([], *LOOP_START_FRAMES, dtype=tf.int32), frames - 1)
    length = tf.random.uniform([], 1, LOOP_MAX_FRAMES + 1, dtype=tf.int32)
    index = tf.range(frames)
    source = tf.where(index < start, index, start + (index - start) % length)
    return tf.gather(x, source)  # never past the frame it replaces: in range


RELEASE_FRAMES = (6, 41)
"""Where a `release` may stop the note (frames, ~23 ms each): 0.15-0.95 s into the window, which holds the
note's first second after a 50-ms pre-roll."""
RELEASE_FALL_FRAMES = (2.0, 35.0)
"""How long a stopped note takes to fall ~60 dB (frames, drawn log-evenly): a player's quick release
(~50 ms) to a hall's ring (~0.8 s)."""


def _release(x: Any) -> Any:
    """The note stopped at a random frame: from there each frame falls linearly in dB to the floor."""
    import tensorflow as tf

    frames = tf.shape(x)[0]
    stop = tf.minimum(tf.random.uniform([], *RELEASE_FRAMES, dtype=tf.int32), frames - 1)
    low, high = np.log(RELEASE_FALL_FRAMES)
    fall = tf.exp(tf.random.uniform([], float(low), float(high)))
    after = tf.cast(tf.maximum(tf.range(frames) - stop, 0), tf.float32)
    floor = tf.reduce_min(x)
    return _zscored(tf.maximum(x - (SIXTY_DB / fall) * after[:, None], floor))


def augment_example(x: Any, aug: Augmentation, band_hz: Any = None) -> Any:
    """One training spectrogram (frames, bands) -> a randomly changed copy.

    First a sample player's loop and a player's early stop (`_release`), then what a different recording would
    change (`_acoustic`: room, microphone, distance, device), then the generic perturbations (level, noise, small
    shifts), then SpecAugment masks. `band_hz` (bands,) is needed by `lowpass` only.
    """
    import tensorflow as tf

    if aug.loop:  # first: the room and microphone hear the looped note
        x = tf.cond(tf.random.uniform([]) < aug.loop, lambda: _loop(x), lambda: x)
    if aug.release:  # before the room: it rings on after the note stops
        x = tf.cond(tf.random.uniform([]) < aug.release, lambda: _release(x), lambda: x)
    if aug.acoustic:
        x = _acoustic(x, aug, band_hz)
    if aug.gain_db:
        x = x + tf.random.uniform([], -aug.gain_db, aug.gain_db)
    if aug.noise:
        x = x + tf.random.normal(tf.shape(x), stddev=aug.noise)
    if aug.time_shift:
        x = _shift(x, aug.time_shift, axis=0)
    if aug.freq_shift:
        x = _shift(x, aug.freq_shift, axis=1)
    if aug.freq_mask:
        x = _mask(x, aug.freq_mask, axis=1)
    if aug.time_mask:
        x = _mask(x, aug.time_mask, axis=0)
    return x


SAME_LABEL_TRIES = 4
"""Partners drawn for a `same_label_mix`: the first from another source is taken (else the first drawn)."""


def label_pools(y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_classes, most rows of one label) row indices by label, padded with 0; and each label's count."""
    y = np.asarray(y)
    counts = np.bincount(y, minlength=n_classes).astype(np.int32)
    pool = np.zeros((n_classes, max(int(counts.max(initial=0)), 1)), dtype=np.int32)
    for label in range(n_classes):
        rows = np.flatnonzero(y == label)
        pool[label, : len(rows)] = rows
    return pool, counts


def _same_label_mixer(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None, n_classes: int, p: float) -> Any:
    """A map over (example, label, row, ...) that blends the example, with probability `p`, with another row
    of its label, from another source when one of the draws is (`Augmentation.same_label_mix`); drops the row."""
    import tensorflow as tf

    table = tf.constant(x)
    pool, counts = (tf.constant(a) for a in label_pools(y, n_classes))
    codes = (
        np.unique(np.asarray(groups).astype(str), return_inverse=True)[1] if groups is not None else np.zeros(len(y))
    )
    source = tf.constant(codes.astype(np.int32))

    def blend(a: Any, label: Any, row: Any) -> Any:
        picks = tf.gather(pool[label], tf.random.uniform([SAME_LABEL_TRIES], 0, counts[label], dtype=tf.int32))
        other = tf.cast(tf.not_equal(tf.gather(source, picks), source[row]), tf.int32)
        partner = table[picks[tf.argmax(other)]]  # argmax: the first from another source, else the first
        lam = tf.random.uniform([], 0.5, 1.0)
        return _zscored(lam * a + (1.0 - lam) * partner)

    def mix(a: Any, label: Any, row: Any, *rest: Any) -> Any:
        a = tf.cond(tf.random.uniform([]) < p, lambda: blend(a, label, row), lambda: a)
        return (a, label, *rest)

    return mix


def _mixup(x: Any, y: Any) -> Any:
    """Blend each example of a batch with another one of the same batch (soft labels)."""
    import tensorflow as tf

    n = tf.shape(x)[0]
    a = tf.random.gamma([n], MIXUP_ALPHA)
    b = tf.random.gamma([n], MIXUP_ALPHA)
    lam = tf.maximum(a / (a + b), b / (a + b))  # keep the original example dominant
    order = tf.random.shuffle(tf.range(n))
    lam_x = tf.reshape(lam, [-1, 1, 1])
    lam_y = tf.reshape(lam, [-1, 1])
    return lam_x * x + (1 - lam_x) * tf.gather(x, order), lam_y * y + (1 - lam_y) * tf.gather(y, order)


def balance_strata(balance: str, y: np.ndarray, groups: np.ndarray | None) -> np.ndarray | None:
    """The stratum of each row that `balance` draws evenly from, or None for uniform draws.

    `sources`: the row's source; `classes`: its label, so that the largest class (TinySOL's
    accordion, 24 % of the notes) is not the answer a model falls back on for an unknown sound;
    `sources_classes`: both. Without `groups`, `sources_classes` is `classes`.
    """
    if balance == "classes" or (balance == "sources_classes" and groups is None):
        return np.asarray(y).astype(str)
    if groups is None or balance == "none":
        return None
    groups = np.asarray(groups).astype(str)
    return groups if balance == "sources" else np.char.add(np.char.add(groups, "/"), np.asarray(y).astype(str))


def _rows_band_hz(aug: Augmentation, band_hz: np.ndarray | None, n: int) -> np.ndarray | None:
    """(n, bands) band frequencies when the augmentation cuts by Hz, else None."""
    if not aug.lowpass:
        return None
    if band_hz is None:
        raise ValueError(
            "the lowpass augmentation needs each example's band frequencies (audio.inputs.band_frequencies)"
        )
    band_hz = np.asarray(band_hz, dtype=np.float32)
    if band_hz.ndim != 2 or band_hz.shape[0] not in (1, n):
        raise ValueError(f"band frequencies must be (1 or {n}, bands), got {band_hz.shape}")
    return np.broadcast_to(band_hz, (n, band_hz.shape[1]))


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    spec: ModelSpec,
    n_classes: int,
    *,
    training: bool,
    seed: int | None = None,
    groups: np.ndarray | None = None,
    band_hz: np.ndarray | None = None,
) -> Any:
    """A batched `tf.data.Dataset`; shuffled and augmented only when `training` is true.

    `groups` (one source name per row) with `balance: sources` makes a training epoch draw
    the same number of rows from every source (`len(x)` rows in all, a small source's rows
    repeated, a large one's sampled); `classes` and `sources_classes` do the same over labels
    or over (source, label) pairs (`balance_strata`). With mixup the labels become one-hot (for every split,
    so the loss matches). `band_hz` (one row for all, or one per row: `audio.inputs.band_frequencies`)
    is what a `lowpass` augmentation cuts by.
    """
    import tensorflow as tf

    t = spec.training
    aug = t.augmentation
    x = x.astype("float32", copy=False)
    y = y.astype("int32", copy=False)
    hz = _rows_band_hz(aug, band_hz, len(x)) if training else None
    mixing = training and aug.same_label_mix > 0
    rows = (np.arange(len(x), dtype=np.int32),) if mixing else ()
    columns = (x, y, *rows) if hz is None else (x, y, *rows, hz)
    ds = tf.data.Dataset.from_tensor_slices(columns)
    if training:
        strata = balance_strata(t.balance, y, groups)
        names = np.unique(strata) if strata is not None else np.empty(0)
        if len(names) > 1:
            parts = [
                tf.data.Dataset.from_tensor_slices(tuple(c[strata == g] for c in columns))
                .shuffle(int(np.sum(strata == g)), seed=seed, reshuffle_each_iteration=True)
                .repeat()
                for g in names
            ]
            ds = tf.data.Dataset.sample_from_datasets(parts, seed=seed).take(len(x))
        else:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        if mixing:  # first: the room and microphone hear the blended note
            ds = ds.map(_same_label_mixer(x, y, groups, n_classes, aug.same_label_mix))
        if aug.enabled:
            # Sequential map: random draws stay reproducible for a seed.
            ds = ds.map(lambda a, b, *f: (augment_example(a, aug, *f), b))
    if t.augmentation.mixup:
        ds = ds.map(lambda a, b: (a, tf.one_hot(b, n_classes)))
    ds = ds.batch(t.batch_size)
    if training and t.augmentation.mixup:
        ds = ds.map(_mixup)
    return ds.prefetch(2)
