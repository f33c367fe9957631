"""What a prediction answers and where its models came from: plain data, no models here.

`Prediction` is the answer for one file (or the reason it could not be analysed), in the
shape the CLI's `--json`, the HTTP API and the pyfunc model give; `ModelInfo` says which
registered version or export a model is. Confidences are calibrated (`ml.calibration`):
an answer below its model's threshold is "not sure" and comes with its candidates, the answers
that its calibration cannot rule out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from instropitch import audio


class PredictorError(RuntimeError):
    """The models cannot be found, loaded, or do not fit together; the message says which and why."""


@dataclass
class Prediction:
    """The answer for one file, or `error` (the reason it could not be analysed)."""

    file: str
    instrument: str | None = None
    instrument_abbr: str | None = None
    instrument_confidence: float | None = None
    note: str | None = None
    octave: int | None = None
    pitch: str | None = None
    midi: int | None = None
    pitch_confidence: float | None = None
    instrument_sure: bool | None = None
    """False when the calibrated confidence is below the model's "not sure" threshold."""
    pitch_sure: bool | None = None
    instrument_family: str | None = None
    """TinySOL's family of the instruments most likely together (Strings, Brass, Winds, Keyboards): their
    calibrated confidences summed. A bowed string is often taken for another on recordings the model never
    heard, rarely for a trumpet."""
    instrument_family_confidence: float | None = None
    instrument_family_sure: bool | None = None
    """True when the family's confidence reaches its own threshold (`Calibration.family_threshold`): a family
    answer a person can trust while the instrument is "not sure". False for models calibrated before it."""
    instrument_confidence_raw: float | None = None
    """The softmax as the model gave it, before calibration (for comparison only)."""
    pitch_confidence_raw: float | None = None
    instrument_foreignness: float | None = None
    """How unlike the instrument model's training notes this note looks (1: like a validation note;
    `ml.foreignness`); the calibration softens the confidence as it grows. None for models without it."""
    pitch_period_hz: float | None = None
    """The f0 the waveform's period gives (YIN), when the pitch answer was checked against it
    (a short note, an unsure answer, the lowest register); None otherwise."""
    pitch_cents: float | None = None
    """How far the note sounds from the note named, in cents (100 to a semitone; negative: below), from the
    waveform's period over the pitch window (`audio.tuning`); None where the period is not believed or names
    another note. 45 or more either way: the pitch answer is "not sure", between two notes."""
    candidates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """When a model is not sure: the answers it cannot rule out (calibrated), whatever `top_k` asked for:
    those whose confidence reaches its calibration's candidate floor, or the top three for models calibrated
    before it."""
    candidates_level: dict[str, float] = field(default_factory=dict)
    """Per model listing candidates by a floor: how often its candidates held the right answer on notes of
    sources it never trained on (0.9), the notes its calibration was fitted on."""
    not_sure_because: dict[str, str] = field(default_factory=dict)
    """Per answer a check of the audio made not sure whatever its model's confidence (`pitch`, `instrument`, whose
    family goes with it), why: no pitched note, a plucked or struck note, a short note, a pure tone, the pitch glides,
    several notes at once, between two notes, no steady period, mains hum, above the highest note. The model's
    numbers for it (confidences, candidates) were fitted on held notes of the 14 instruments and do not describe
    this file: the CLI and the page show its candidates with none, and no `candidates_level` promise."""
    top_k: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = field(default=None, repr=False)
    """Class name of the failure (e.g. `NotAudioError`, `SilentAudioError`, `FileNotFoundError`)."""
    warnings: list[str] = field(default_factory=list)
    """What was read in place of a header that could not be trusted (e.g. a WAV written to a pipe)."""
    spectrograms: dict[str, np.ndarray] | None = field(default=None, repr=False)
    """The model inputs (`pitch`, `instrument`: frames × bands), when asked for."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape: every field for a prediction (`warnings` possibly empty), `file` and `error` for a failure."""
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        return {
            "file": self.file,
            "instrument": self.instrument,
            "instrument_abbr": self.instrument_abbr,
            "instrument_confidence": self.instrument_confidence,
            "note": self.note,
            "octave": self.octave,
            "pitch": self.pitch,
            "midi": self.midi,
            "pitch_confidence": self.pitch_confidence,
            "instrument_sure": self.instrument_sure,
            "pitch_sure": self.pitch_sure,
            "instrument_family": self.instrument_family,
            "instrument_family_confidence": self.instrument_family_confidence,
            "instrument_family_sure": self.instrument_family_sure,
            "instrument_confidence_raw": self.instrument_confidence_raw,
            "pitch_confidence_raw": self.pitch_confidence_raw,
            "instrument_foreignness": self.instrument_foreignness,
            "pitch_period_hz": self.pitch_period_hz,
            "pitch_cents": self.pitch_cents,
            "candidates": self.candidates,
            "candidates_level": self.candidates_level,
            "not_sure_because": self.not_sure_because,
            "top_k": self.top_k,
            "warnings": list(self.warnings),
        }

    @classmethod
    def failure(cls, file: str, exc: BaseException) -> Prediction:
        if isinstance(exc, audio.AudioError):
            reason = exc.reason
        elif isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror
        else:
            reason = str(exc) or type(exc).__name__
        return cls(file=file, error=reason, error_type=type(exc).__name__)


def confidence(p: float) -> float:
    """A probability as shown to people: rounded to 4 places."""
    return round(float(p), 4)


@dataclass
class ModelInfo:
    """Where one model came from: what `/models`, the manifest and the CLI report."""

    role: str
    registered_model: str | None = None
    version: str | None = None
    alias: str | None = None
    test_accuracy: float | None = None
    heldout_accuracy: float | None = None
    """Mean accuracy of this recipe's fits on the sources each never saw (None without held-out fits)."""
    run_id: str | None = None
    source_uri: str | None = None
    feature_preset: str | None = None
    feature_digest: str | None = None
    data_digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
