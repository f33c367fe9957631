"""Model recipes as YAML files: what to predict, from which spectrogram, with which CNN.

Each `models/*.yaml` is one model the pipeline trains; adding a file adds a model with no
code change. Validation is strict on purpose: a typo such as `epoch:` for `epochs:` would
otherwise silently train with a default, so every unknown key is an error that names the
file, the key path and the closest known key.

Only PyYAML is imported here, so the Airflow scheduler can list and check the recipes
while parsing a DAG without loading TensorFlow.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from instropitch.tinysol import INSTRUMENT_BY_ABBR, SOURCE_NAME

LABELS: tuple[str, ...] = ("midi", "instrument")
"""What a model predicts: the MIDI number of the note, or the instrument playing it."""

INPUTS: tuple[str, ...] = ("pitch", "instrument", "instrument+harmonics")
"""What a model reads: one of the two stored spectrograms (the features preset defines one of
each), or the instrument one beside the pitch one re-centred on the note (`audio.inputs`)."""

POOLINGS: tuple[str, ...] = ("avg", "max", "flatten", "time_avg", "time_max")
"""How the conv stack's output becomes a vector.

`avg`/`max` pool over time *and* frequency: shift-invariant, good for timbre (instrument).
`time_avg`/`time_max` pool over time only and keep the frequency axis, so the position of
energy in frequency (the pitch) survives. `flatten` keeps everything (the seed recipe).
"""

MONITORS: tuple[str, ...] = ("val_loss", "val_accuracy")

ENV_MODELS_DIR = "INSTROPITCH_MODELS_DIR"


def models_dir() -> Path:
    """The folder of recipes people edit: `$INSTROPITCH_MODELS_DIR`, else `./models`.

    The recipes are the project's, not the package's: they live at the top of the checkout
    (`models/`), and every process that trains (Airflow workers, the local stack, compose)
    is started with the variable set or from the checkout.
    """
    return Path(os.environ.get(ENV_MODELS_DIR) or "models").resolve()


MAX_PARAM_LENGTH = 500
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class SpecError(ValueError):
    """A model YAML is invalid; the message lists every problem, one per line."""


# ------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class ConvBlock:
    """Conv2D(filters, kernel, same padding) -> [BatchNorm | GroupNorm] -> ReLU -> MaxPool(pool)."""

    filters: int
    kernel: tuple[int, int] = (3, 3)
    pool: tuple[int, int] = (2, 2)


ENVELOPE_READ_KEYS = {"linear": ("c",), "steps": ("rounds", "learning_rate")}
"""The keys each `Envelope.read` takes; the other read's are refused in a recipe and not logged."""
ENVELOPE_READS = tuple(ENVELOPE_READ_KEYS)


@dataclass(frozen=True)
class Envelope:
    """A read of summaries of the instrument spectrogram over the note, fitted after the network on the same
    rows, its logits x `weight` added to the network's (`ml.envelope`). `read`: "linear", a logistic regression
    (`c`: scikit-learn's `C`, the inverse strength of its L2 penalty), or "steps", a sum of one step per test
    (`summary <= threshold`) fitted by gradient boosting of depth-1 trees (`rounds`, `learning_rate`)."""

    weight: float = 0.5
    read: str = "linear"
    c: float = 0.1
    rounds: int = 150
    learning_rate: float = 0.2

    def recipe(self) -> dict[str, Any]:
        """The keys this read uses, as a recipe writes them (MLflow logs no other read's settings)."""
        return {"weight": self.weight, "read": self.read} | {k: getattr(self, k) for k in ENVELOPE_READ_KEYS[self.read]}


@dataclass(frozen=True)
class Architecture:
    conv_blocks: tuple[ConvBlock, ...]
    batch_norm: bool = True
    group_norm: int = 0
    """Groups of a GroupNormalization after each convolution (0: none). It normalises each example
    on its own, so training and inference see the same statistics: no moving averages of augmented
    batches to go stale, the batch-norm collapse's cause. Not with `batch_norm`. On the instrument recipe
    it scored 16-18 points under none (bench/RESULTS.md, "Less dropout, and group normalisation")."""
    pooling: str = "avg"
    dense: tuple[int, ...] = (128,)
    dropout: float = 0.3
    band_shift_average: int = 0
    """K > 0: the model answers the mean logits of its input moved by -K..K bands (the edge filled with the
    note's floor, as `augmentation.freq_shift` moves it in training): several looks at one note, built into
    the graph (`cnn.average_band_shifts`). Not for a pitch model: a band is a pitch there."""
    envelope: Envelope | None = None
    """A read of the instrument spectrogram's summaries (`Envelope.read`) added to the network's logits (`ml.envelope`);
    None (the default): the network alone. Not for the pitch input."""
    logit_adjustment: float = 0.0
    """tau: the fitted model's logits minus tau x log(each class's share of its fit rows) (`ml.class_prior`):
    0 answers by the training data's mix of classes, 1 as if every class were equally likely."""


@dataclass(frozen=True)
class SharedSamples:
    """Sources that play `instruments` from the same samples (two fonts built from one free sample set):
    a fit blind to one of them does not train on the others' notes of those instruments."""

    sources: tuple[str, ...]
    instruments: tuple[str, ...]


@dataclass(frozen=True)
class EarlyStopping:
    patience: int = 5
    monitor: str = "val_loss"


@dataclass(frozen=True)
class ReduceLROnPlateau:
    """Multiply the learning rate by `factor` when val_loss has not improved for `patience`
    epochs (Keras' callback): late epochs take smaller steps, so where training stops
    matters less."""

    factor: float = 0.5
    patience: int = 3


@dataclass(frozen=True)
class Augmentation:
    """Random changes applied to training examples only; 0 / false switches one off.

    Values are in the units of the stored spectrogram. `gain_db` adds one random offset
    to the whole example, which is a level change only for un-normalised dB inputs (a
    per-example z-scored preset such as "default" removes level anyway: leave it 0 there).
    `noise` is the std of added Gaussian noise. Shifts move the spectrogram by whole
    frames (time) or bands (frequency), filling with its floor value.

    What a different microphone, room or distance does to a recording, applied to the
    spectrogram (the warehouse holds spectrograms, not audio), in per-example z-score units
    of dB spectrograms such as the "default" preset (see `cnn.augment_example`):
    `eq_tilt` — a random linear tilt across the band axis of up to ± this much end to end;
    `eq_curve` — a random smooth curve across the bands (8 knots, each up to ± this much): the
    uneven response of another instrument body, sample set or microphone;
    `reverb` — with this probability, a decaying tail (0.1–1.5 s of the frame rate) mixed in;
    `noise_floor` — a steady noise floor raised up to this far above the example's minimum;
    `band_limit` — up to this fraction of the top bands (a duller microphone) and half of it
    at the bottom cut to the floor;
    `lowpass` — with this probability, every band above a random cut-off (`ml.cnn.LOWPASS_HZ`, drawn
    evenly in log frequency) cut to the floor, last, as the recording device does: a phone, a
    voice codec, a file sampled at 8 or 16 kHz. Unlike `band_limit` it cuts by frequency in Hz,
    so in a note-centred input each note loses its own share of bands; training passes every
    example's band frequencies (`audio.inputs.band_frequencies`).
    They keep the label of a pitch model too (nothing moves in frequency). After any of them
    the example is z-scored again, as stored ones are.

    `loop` — with this probability, the note freezes after its attack into a short loop of its
    own frames, as a sample player loops a few periods of a recording: a steady sustain then
    marks no instrument (cheap fonts and FM synthesis play every instrument steadily).

    `release` — with this probability, the note stops early: from a random moment 0.15-0.95 s into the
    window it falls to the floor over 0.05-0.8 s (a player's release and the room's ring), as a staccato
    note does; the renders all hold for longer than the window, a person's short note does not.

    `same_label_mix` — with this probability, the example is blended (a random weight, at least half its own)
    with another training example of the same label, from another source where there is one: a timbre
    between two sample sets of one instrument, a font none of them is (intra-label LISA, Yao et al. 2022).
    The label stays.

    SpecAugment masks (Park et al., 2019): `freq_mask` / `time_mask` set one random run of up
    to this many bands / frames to the example's mean, so no single band or moment can carry
    the decision alone.
    """

    gain_db: float = 0.0
    noise: float = 0.0
    time_shift: int = 0
    freq_shift: int = 0
    mixup: bool = False
    eq_tilt: float = 0.0
    eq_curve: float = 0.0
    reverb: float = 0.0
    noise_floor: float = 0.0
    band_limit: float = 0.0
    lowpass: float = 0.0
    freq_mask: int = 0
    time_mask: int = 0
    loop: float = 0.0
    release: float = 0.0
    same_label_mix: float = 0.0

    @property
    def acoustic(self) -> bool:
        """True when one of the recording-condition changes (tilt, reverb, floor, band limits) is on."""
        return bool(self.eq_tilt or self.eq_curve or self.reverb or self.noise_floor or self.band_limit or self.lowpass)

    @property
    def enabled(self) -> bool:
        return bool(
            self.gain_db
            or self.noise
            or self.time_shift
            or self.freq_shift
            or self.mixup
            or self.acoustic
            or self.freq_mask
            or self.time_mask
            or self.loop
            or self.release
            or self.same_label_mix
        )


MIXUP_ALPHA = 0.2
"""Beta(alpha, alpha) mixing weight when `mixup: true` (the usual choice for audio)."""


BALANCES: tuple[str, ...] = ("none", "sources", "classes", "sources_classes")
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
PRECISIONS: tuple[str, ...] = ("float32", "mixed_bfloat16", "auto")


@dataclass(frozen=True)
class Training:
    """`balance: sources` draws every batch evenly from the data sources (timbre sets) of the
    training rows, so a large source does not drown a small one; "none" draws rows uniformly;
    `classes` draws evenly from the labels, `sources_classes` from every (source, label) pair.
    `leave_one_source_out` also trains, for each source, a model that never sees it and logs
    its accuracy on that source (the honest estimate for recordings unlike the training data;
    it costs one extra fit per source and needs two sources or more). `heldout_groups` N > 1
    caps those fits at N: with more sources than that, each fit holds out a group of them
    (round-robin over their sorted names), and every source is still scored on its own.
    `heldout_together` lists sources that one fit holds out as one (fonts that share samples:
    one is not unheard while its relative trains); every other source gets a fit of its own.
    Use one of the two: they are two ways of choosing the fits.
    `heldout_shared` lists sources that play some instruments from the same samples
    (`SharedSamples`): fonts otherwise their own, whose makers took a few instruments from one
    free set. A fit blind to one of them leaves the others' notes of those instruments out of
    its training rows, so that no held-out note is played by samples the fit heard.
    `synthetic_tones` (pitch models only) adds N generated periodic tones per MIDI note of the
    output layout to the fitting rows (`synth.tones`: sines, square, triangle and sawtooth waves,
    missing-fundamental and short tones): a person checks the tool with a tone generator, and
    no instrument sample teaches what a bare sine at 41 Hz looks like. 0 adds none.
    `lr_schedule: cosine` lowers the learning rate epoch by epoch along half a cosine, from
    `learning_rate` to 1/100 of it at `epochs`; `constant` (the default) keeps `learning_rate`.
    Cosine over 40 or 60 epochs read 3-4 points lower held out than the instrument recipe's
    constant 90 (bench/RESULTS.md, "Fewer epochs, threads, and where the demo's time goes").
    `weight_average` m (0 < m < 1) keeps a moving average of the weights over the training steps
    (each step: average = m x average + (1 - m) x weights); validation, early stopping and the
    saved model use the average, a flatter point than the last step's weights (SWAD, Cha et al.
    2021, for domains never trained on). 0 (the default) keeps the weights as trained.
    `precision: mixed_bfloat16` computes the fit in bfloat16 with float32 weights (Keras mixed
    precision); `auto` does so where the CPU computes bfloat16 itself (AVX512-BF16 or AMX), else
    float32 (the default). The model kept, logged and exported computes in float32 either way.
    `members` N > 1 fits N networks from seeds `seed`, `seed` + 1000, ... on the same rows and keeps
    them as one model whose softmax reads their embeddings side by side with their output weights
    averaged: the mean of their logits, a deep ensemble (Lakshminarayanan et al., 2017) at N times
    the fit. 1 (the default) fits one.
    `weight_decay` w > 0 trains with AdamW (Loshchilov & Hutter, 2019): each step shrinks the
    weights by learning_rate x w, apart from the gradient's step; 0 (the default) trains with Adam.
    `contrastive` c > 0 adds c x a supervised contrastive loss on the embedding (the softmax's input;
    Khosla et al., 2020): in each batch, notes of one class are pulled together and apart from the
    others, whatever source plays them (`ml.contrastive.supervised_contrastive_loss`). 0 (the default): none.
    `contrastive_head` n > 0 puts that loss on an n-wide projection head over the embedding (Khosla et al.'s
    form; the head is fitted beside the network and not kept); 0 (the default): on the embedding itself."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    validation_split: float = 0.15
    seed: int = 42
    early_stopping: EarlyStopping | None = field(default_factory=EarlyStopping)
    reduce_lr_on_plateau: ReduceLROnPlateau | None = None
    lr_schedule: str = "constant"
    augmentation: Augmentation = field(default_factory=Augmentation)
    balance: str = "sources"
    leave_one_source_out: bool = True
    heldout_groups: int = 0
    heldout_together: tuple[tuple[str, ...], ...] = ()
    heldout_shared: tuple[SharedSamples, ...] = ()
    synthetic_tones: int = 0
    weight_average: float = 0.0
    precision: str = "float32"
    members: int = 1
    weight_decay: float = 0.0
    contrastive: float = 0.0
    contrastive_head: int = 0


@dataclass(frozen=True)
class ModelSpec:
    """One model recipe. `source` is the YAML it came from (not a parameter of the model)."""

    name: str
    label: str
    input: str
    architecture: Architecture
    training: Training = field(default_factory=Training)
    features: str = "default"
    description: str = ""
    source: Path | None = field(default=None, compare=False)

    @property
    def registered_model_name(self) -> str:
        return f"instropitch-{self.name}"

    def to_params(self) -> dict[str, str]:
        """Flat `section.key` -> text for `mlflow.log_params` (values cut to 500 chars)."""
        params: dict[str, str] = {}
        _flatten(
            {
                "name": self.name,
                "label": self.label,
                "input": self.input,
                "features": self.features,
                "description": self.description,
                "architecture": self.architecture,
                "training": self.training,
            },
            "",
            params,
        )
        return {k: v[:MAX_PARAM_LENGTH] for k, v in params.items()}


def _list_text(value: tuple[Any, ...]) -> str:
    """`("a", ("b", "c"))` -> `[a, [b, c]]`: as the YAML list was written."""
    return "[" + ", ".join(_list_text(v) if isinstance(v, tuple) else str(v) for v in value) + "]"


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, Envelope):
        value = value.recipe()
    if hasattr(value, "__dataclass_fields__"):
        value = {name: getattr(value, name) for name in value.__dataclass_fields__}
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, tuple) and value and all(hasattr(v, "__dataclass_fields__") for v in value):
        for i, item in enumerate(value):
            _flatten(item, f"{prefix}.{i}", out)
    elif isinstance(value, tuple):
        out[prefix] = _list_text(value)
    else:
        out[prefix] = "null" if value is None else str(value)


# ------------------------------------------------------------------------ validation


_REQUIRED = object()


class _Section:
    """Reads one mapping of a YAML file, recording errors instead of stopping at the first."""

    def __init__(self, data: Any, path: str, errors: list[str], where: str):
        self.path = path
        self.errors = errors
        self.where = where
        self.known: list[str] = []
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.error("", f"must be a mapping, got {_kind(data)}")
            data = {}
        self.data: dict = data

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> None:
        path = self.key(name) if name else (self.path or "(top level)")
        self.errors.append(f"{self.where}: {path}: {message}")

    def take(self, name: str, check: Callable[[Any], Any], default: Any = _REQUIRED) -> Any:
        """The value of `name` after `check` (which raises ValueError with the reason)."""
        self.known.append(name)
        if name not in self.data:
            if default is _REQUIRED:
                self.error(name, "missing required key")
            return default
        try:
            return check(self.data[name])
        except ValueError as exc:
            self.error(name, str(exc))
            return default if default is not _REQUIRED else None

    def section(self, name: str) -> _Section:
        self.known.append(name)
        return _Section(self.data.get(name), self.key(name), self.errors, self.where)

    def finish(self) -> None:
        """Every key not read is unknown: report it with the nearest known key."""
        for key in self.data:
            if key in self.known:
                continue
            close = difflib.get_close_matches(str(key), self.known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(self.known)})"
            self.error(str(key), f"unknown key{hint}")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _int(low: int | None = None, high: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number, got {_kind(value)} {value!r}")
        if low is not None and value < low:
            raise ValueError(f"must be >= {low}, got {value}")
        if high is not None and value > high:
            raise ValueError(f"must be <= {high}, got {value}")
        return value

    return check


def _float(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        # PyYAML reads `1e-3` (no dot) as a string; accept it since everyone writes it so.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"must be a number, got the text {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, got {_kind(value)} {value!r}")
        value = float(value)
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if too_low or too_high:
            lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
            raise ValueError(f"must be in {lo}{low:g}, {high:g}{hi}, got {value:g}")
        return value

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {_kind(value)} {value!r}")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            close = difflib.get_close_matches(str(value), options, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"must be one of {', '.join(options)}; got {value!r}{hint}")
        return value

    return check


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be text, got {_kind(value)} {value!r}")
    return value


def _name(value: Any) -> str:
    value = _text(value)
    if not _NAME_RE.match(value):
        raise ValueError(f"{value!r} must be lower case letters, digits, '-' or '_' (it names the registered model)")
    return value


def _pair(value: Any) -> tuple[int, int]:
    """`3` or `[3, 1]` -> (time, frequency) sizes."""
    check = _int(1)
    if isinstance(value, list):
        if len(value) != 2:
            raise ValueError(f"must be a number or a [time, frequency] pair, got {value!r}")
        return check(value[0]), check(value[1])
    size = check(value)
    return size, size


def _source_groups(value: Any) -> tuple[tuple[str, ...], ...]:
    """`[[a, b], [c, d, e]]` -> groups of two or more source names, none in two groups."""
    if not isinstance(value, list):
        raise ValueError(f"must be a list of lists of source names, got {_kind(value)} {value!r}")
    groups: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for group in value:
        if not isinstance(group, list) or len(group) < 2:
            raise ValueError(f"each entry must list two or more source names, got {group!r}")
        for name in group:
            if not isinstance(name, str) or not SOURCE_NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not a source name (a letter or digit, then letters, digits, '.', '_', '-')"
                )
            if name in seen:
                raise ValueError(f"{name!r} is in two groups: a source is held out by one fit")
            seen.add(name)
        groups.append(tuple(group))
    return tuple(groups)


def _shared_samples(value: Any) -> tuple[SharedSamples, ...]:
    """`[{sources: [a, b], instruments: [Acc, Ob]}, ...]` -> `SharedSamples`, each naming two or more
    sources and one or more TinySOL instruments."""
    if not isinstance(value, list):
        raise ValueError(f"must be a list of {{sources: [...], instruments: [...]}}, got {_kind(value)} {value!r}")
    entries = []
    for entry in value:
        if not isinstance(entry, dict) or set(entry) != {"sources", "instruments"}:
            raise ValueError(f"each entry must have exactly the keys sources and instruments, got {entry!r}")
        (sources,) = _source_groups([entry["sources"]])
        instruments = entry["instruments"]
        if not isinstance(instruments, list) or not instruments:
            raise ValueError(f"instruments must be a non-empty list, got {instruments!r}")
        unknown = [i for i in instruments if i not in INSTRUMENT_BY_ABBR]
        if unknown:
            raise ValueError(f"{unknown} are not TinySOL instruments ({', '.join(INSTRUMENT_BY_ABBR)})")
        entries.append(SharedSamples(sources, tuple(instruments)))
    return tuple(entries)


def _read_block(data: Any, path: str, errors: list[str], where: str) -> ConvBlock:
    s = _Section(data, path, errors, where)
    block = ConvBlock(
        filters=s.take("filters", _int(1, 4096)),
        kernel=s.take("kernel", _pair, (3, 3)),
        pool=s.take("pool", _pair, (2, 2)),
    )
    s.finish()
    return block


def _read_architecture(s: _Section) -> Architecture:
    blocks: list[ConvBlock] = []
    raw = s.take("conv_blocks", lambda v: v)
    if raw is not None:
        if not isinstance(raw, list) or not raw:
            s.error("conv_blocks", f"must be a non-empty list of {{filters, kernel, pool}}, got {_kind(raw)}")
        else:
            blocks = [_read_block(b, s.key(f"conv_blocks.{i}"), s.errors, s.where) for i, b in enumerate(raw)]

    def dense(value: Any) -> tuple[int, ...]:
        if not isinstance(value, list):
            raise ValueError(f"must be a list of layer sizes (may be empty), got {_kind(value)}")
        return tuple(_int(1, 65536)(v) for v in value)

    arch = Architecture(
        conv_blocks=tuple(blocks),
        batch_norm=s.take("batch_norm", _bool, True),
        group_norm=s.take("group_norm", _int(0, 4096), 0),
        pooling=s.take("pooling", _choice(POOLINGS), "avg"),
        dense=s.take("dense", dense, (128,)),
        dropout=s.take("dropout", _float(0.0, 1.0, high_open=True), 0.3),
        band_shift_average=s.take("band_shift_average", _int(0, 8), 0),
        envelope=_read_envelope(s),
        logit_adjustment=s.take("logit_adjustment", _float(0.0, 2.0), 0.0),
    )
    if arch.batch_norm and arch.group_norm:
        s.error("group_norm", "cannot be used with batch_norm: true (one normalisation per block)")
    for i, block in enumerate(arch.conv_blocks):
        if arch.group_norm and block.filters % arch.group_norm:
            s.error(f"conv_blocks.{i}.filters", f"{block.filters} is not a multiple of group_norm ({arch.group_norm})")
    s.finish()
    return arch


def _read_envelope(s: _Section) -> Envelope | None:
    s.known.append("envelope")
    if s.data.get("envelope") is None:
        return None
    e = _Section(s.data["envelope"], s.key("envelope"), s.errors, s.where)
    read = e.take("read", _choice(ENVELOPE_READS), Envelope.read)
    envelope = Envelope(
        weight=e.take("weight", _float(0.0, 10.0, low_open=True), Envelope.weight),
        read=read,
        c=e.take("c", _float(0.0, 1e6, low_open=True), Envelope.c),
        rounds=e.take("rounds", _int(1, 10_000), Envelope.rounds),
        learning_rate=e.take("learning_rate", _float(0.0, 1.0, low_open=True), Envelope.learning_rate),
    )
    for other, keys in ENVELOPE_READ_KEYS.items():
        for key in keys:
            if other != read and key in e.data:
                e.error(key, f"is for read: {other}, not {read}")
    e.finish()
    return envelope


def _read_training(s: _Section, label: str | None) -> Training:
    defaults = Training()
    early: EarlyStopping | None = defaults.early_stopping
    s.known.append("early_stopping")
    if "early_stopping" in s.data and s.data["early_stopping"] is None:
        early = None  # `early_stopping: null` trains all epochs
    elif "early_stopping" in s.data:
        e = _Section(s.data["early_stopping"], s.key("early_stopping"), s.errors, s.where)
        early = EarlyStopping(
            patience=e.take("patience", _int(1, 1000), 5),
            monitor=e.take("monitor", _choice(MONITORS), "val_loss"),
        )
        e.finish()

    reduce_lr: ReduceLROnPlateau | None = None
    s.known.append("reduce_lr_on_plateau")
    if s.data.get("reduce_lr_on_plateau") is not None:
        r = _Section(s.data["reduce_lr_on_plateau"], s.key("reduce_lr_on_plateau"), s.errors, s.where)
        reduce_lr = ReduceLROnPlateau(
            factor=r.take("factor", _float(0.0, 1.0, low_open=True, high_open=True), 0.5),
            patience=r.take("patience", _int(1, 1000), 3),
        )
        r.finish()

    a = s.section("augmentation")
    aug = Augmentation(
        gain_db=a.take("gain_db", _float(0.0, 60.0), 0.0),
        noise=a.take("noise", _float(0.0, 60.0), 0.0),
        time_shift=a.take("time_shift", _int(0, 1000), 0),
        freq_shift=a.take("freq_shift", _int(0, 1000), 0),
        mixup=a.take("mixup", _bool, False),
        eq_tilt=a.take("eq_tilt", _float(0.0, 20.0), 0.0),
        eq_curve=a.take("eq_curve", _float(0.0, 20.0), 0.0),
        reverb=a.take("reverb", _float(0.0, 1.0), 0.0),
        noise_floor=a.take("noise_floor", _float(0.0, 20.0), 0.0),
        band_limit=a.take("band_limit", _float(0.0, 0.9), 0.0),
        lowpass=a.take("lowpass", _float(0.0, 1.0), 0.0),
        freq_mask=a.take("freq_mask", _int(0, 1000), 0),
        time_mask=a.take("time_mask", _int(0, 1000), 0),
        loop=a.take("loop", _float(0.0, 1.0), 0.0),
        release=a.take("release", _float(0.0, 1.0), 0.0),
        same_label_mix=a.take("same_label_mix", _float(0.0, 1.0), 0.0),
    )
    if aug.freq_shift and label == "midi":
        a.error(
            "freq_shift",
            "not allowed for label 'midi': shifting the spectrogram in frequency changes the note, "
            "so the label would be wrong; use it for instrument models only (or set 0)",
        )
    a.finish()

    training = Training(
        epochs=s.take("epochs", _int(1, 10000), defaults.epochs),
        batch_size=s.take("batch_size", _int(1, 65536), defaults.batch_size),
        learning_rate=s.take("learning_rate", _float(0.0, 1.0, low_open=True), defaults.learning_rate),
        weight_decay=s.take("weight_decay", _float(0.0, 1.0), defaults.weight_decay),
        validation_split=s.take("validation_split", _float(0.0, 0.5, low_open=True), defaults.validation_split),
        seed=s.take("seed", _int(0, 2**31 - 1), defaults.seed),
        early_stopping=early,
        reduce_lr_on_plateau=reduce_lr,
        lr_schedule=s.take("lr_schedule", _choice(LR_SCHEDULES), defaults.lr_schedule),
        augmentation=aug,
        balance=s.take("balance", _choice(BALANCES), defaults.balance),
        leave_one_source_out=s.take("leave_one_source_out", _bool, defaults.leave_one_source_out),
        heldout_groups=s.take("heldout_groups", _int(0, 1000), defaults.heldout_groups),
        heldout_together=s.take("heldout_together", _source_groups, defaults.heldout_together),
        heldout_shared=s.take("heldout_shared", _shared_samples, defaults.heldout_shared),
        synthetic_tones=s.take("synthetic_tones", _int(0, 100), defaults.synthetic_tones),
        weight_average=s.take("weight_average", _float(0.0, 1.0, high_open=True), defaults.weight_average),
        precision=s.take("precision", _choice(PRECISIONS), defaults.precision),
        members=s.take("members", _int(1, 16), defaults.members),
        contrastive=s.take("contrastive", _float(0.0, 10.0), defaults.contrastive),
        contrastive_head=s.take("contrastive_head", _int(0, 4096), defaults.contrastive_head),
    )
    if training.heldout_groups == 1:
        s.error("heldout_groups", "1 would hold out every source at once: use 0 (one fit per source) or 2 or more")
    if training.heldout_groups and training.heldout_together:
        s.error("heldout_together", "set either heldout_groups or heldout_together, not both: each chooses the fits")
    if training.lr_schedule != "constant" and training.reduce_lr_on_plateau is not None:
        s.error("lr_schedule", "set either lr_schedule or reduce_lr_on_plateau, not both: each sets the learning rate")
    if training.contrastive_head and not training.contrastive:
        s.error("contrastive_head", "a projection head for the contrastive loss: set training.contrastive above 0 too")
    if training.synthetic_tones and label != "midi":
        s.error("synthetic_tones", "only for label 'midi': a generated tone has a pitch, not an instrument")
    s.finish()
    return training


def parse_spec(data: Any, where: str = "<spec>", source: Path | None = None) -> ModelSpec:
    """Validate an already-parsed YAML document; `where` names it in error messages."""
    errors: list[str] = []
    top = _Section(data, "", errors, where)
    default_name = source.stem if source is not None else _REQUIRED
    name = top.take("name", _name, default_name)
    label = top.take("label", _choice(LABELS))
    spec_input = top.take("input", _choice(INPUTS))
    features = top.take("features", _text, "default")
    if features is not None and not features.strip():
        top.error("features", "must name a features preset, e.g. 'default'")
    description = top.take("description", _text, "")
    architecture = _read_architecture(top.section("architecture"))
    training = _read_training(top.section("training"), label)
    if architecture.envelope is not None and spec_input == "pitch":
        top.error("architecture.envelope", "reads the instrument spectrogram: not for input 'pitch'")
    top.finish()
    if errors:
        raise SpecError("\n".join(errors))
    return ModelSpec(
        name=name,
        label=label,
        input=spec_input,
        architecture=architecture,
        training=training,
        features=features,
        description=description.strip(),
        source=source,
    )


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate one model YAML; raises `SpecError` listing every problem."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    return parse_spec(data, where=str(path), source=path)


def load_specs(folder: str | Path) -> list[ModelSpec]:
    """Every `*.yaml` / `*.yml` in `folder`, sorted by model name; names must be unique."""
    folder = Path(folder)
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    if not files:
        raise SpecError(f"{folder}: no model YAML files (*.yaml)")
    problems: list[str] = []
    specs: list[ModelSpec] = []
    for path in files:
        try:
            specs.append(load_spec(path))
        except SpecError as exc:
            problems.append(str(exc))
    seen: dict[str, Path | None] = {}
    for spec in specs:
        if spec.name in seen:
            problems.append(f"{spec.source}: name: {spec.name!r} is also used by {seen[spec.name]}")
        seen[spec.name] = spec.source
    if problems:
        raise SpecError("\n".join(problems))
    return sorted(specs, key=lambda s: s.name)
