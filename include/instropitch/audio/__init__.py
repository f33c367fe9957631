"""Audio in: decoding a user's or the dataset's recording, and the spectrograms both models read.

`instropitch.audio` re-exports the decoder (`instropitch.audio.wav`), as librosa's
top level re-exports `librosa.core`: `audio.load(path, sr)`, `audio.read_info(...)`.
The spectrograms live in `instropitch.audio.features`.

May import: the vocabulary (`instropitch.tinysol`) and numpy/scipy/soxr; nothing else of
the project.
"""

from instropitch.audio.wav import (
    DEFAULT_MAX_DURATION,
    HEADER_READ_SIZE,
    MAX_CHANNELS,
    MAX_CHUNKS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    SILENCE_THRESHOLD,
    AudioError,
    EmptyAudioError,
    InvalidSamplesError,
    NotAWavError,
    SilentAudioError,
    Source,
    TooLongError,
    TooShortError,
    TruncatedError,
    UnsupportedFormatError,
    WavInfo,
    encode_samples,
    ensure_audible,
    load,
    open_source,
    read_frames,
    read_info,
    read_segment,
    resample,
    resampled_length,
    segment_byte_range,
    write_wav,
)

__all__ = [
    "DEFAULT_MAX_DURATION",
    "HEADER_READ_SIZE",
    "MAX_CHANNELS",
    "MAX_CHUNKS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "SILENCE_THRESHOLD",
    "AudioError",
    "EmptyAudioError",
    "InvalidSamplesError",
    "NotAWavError",
    "SilentAudioError",
    "Source",
    "TooLongError",
    "TooShortError",
    "TruncatedError",
    "UnsupportedFormatError",
    "WavInfo",
    "encode_samples",
    "ensure_audible",
    "load",
    "open_source",
    "read_frames",
    "read_info",
    "read_segment",
    "resample",
    "resampled_length",
    "segment_byte_range",
    "write_wav",
]
