"""Reference methods the CNNs must beat on every evaluation set.

* Pitch: pYIN (`librosa.pyin`) on half a second from the middle of the note; the median
  voiced f0, rounded to the nearest MIDI number.
* Instrument: mean and standard deviation of 20 MFCCs over the first two seconds, scaled,
  into a multinomial logistic regression (scikit-learn).

Both read the WAV files themselves (22,050 Hz mono), so they see exactly what a user's
file holds, not our spectrograms.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from instropitch import audio
from instropitch.tinysol import hz_to_midi

SAMPLE_RATE = 22050
N_MFCC = 20
MFCC_SECONDS = 2.0
PYIN_SECONDS = 0.5
PYIN_FMIN = 32.7  # C1: below TinySOL's lowest note (E1, 41.2 Hz) by a few semitones
PYIN_FMAX = 4700.0  # above C#8 (4,435 Hz)


def mfcc_vector(path: str | Path) -> np.ndarray:
    """Mean and std over time of 20 MFCCs of the note's first two seconds (40 numbers)."""
    import librosa

    with audio.open_source(path) as src:
        info = audio.read_info(src)
        y = audio.read_segment(src, 0.0, min(MFCC_SECONDS, info.duration), SAMPLE_RATE, info=info)
    m = librosa.feature.mfcc(y=y.astype(np.float32), sr=SAMPLE_RATE, n_mfcc=N_MFCC)
    return np.concatenate([m.mean(axis=1), m.std(axis=1)]).astype(np.float32)


def mfcc_matrix(paths: Sequence[str | Path]) -> np.ndarray:
    """`mfcc_vector` of every file, one row each."""
    return np.stack([mfcc_vector(p) for p in paths])


class MfccLogisticRegression:
    """The instrument baseline: standardised MFCC statistics into logistic regression."""

    def __init__(self, seed: int = 0) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0, random_state=seed))

    def fit(self, x: np.ndarray, labels: np.ndarray) -> MfccLogisticRegression:
        self.model.fit(x, np.asarray(labels).astype(str))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x)


def pyin_midi(path: str | Path) -> int:
    """pYIN's note for the file: median voiced f0 of 0.5 s from the middle, as a MIDI number (-1 if unvoiced)."""
    import librosa

    with audio.open_source(path) as src:
        info = audio.read_info(src)
        length = min(PYIN_SECONDS, info.duration)
        start = max(0.0, info.duration / 2 - length / 2)
        y = audio.read_segment(src, start, length, SAMPLE_RATE, info=info)
    f0, voiced, _ = librosa.pyin(
        y.astype(np.float32), fmin=PYIN_FMIN, fmax=PYIN_FMAX, sr=SAMPLE_RATE, frame_length=2048
    )
    f0 = f0[voiced & np.isfinite(f0)] if voiced is not None else f0[np.isfinite(f0)]
    if len(f0) == 0:
        return -1
    return int(round(float(hz_to_midi(np.median(f0)))))


__all__ = ["MfccLogisticRegression", "mfcc_matrix", "mfcc_vector", "pyin_midi"]
