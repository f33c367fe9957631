"""Spectrogram configs, presets and features: shapes, normalisation, silence, pitch shifts, partial reads."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest

from instropitch import audio
from instropitch.audio.features import (
    FEATURES_VERSION,
    NOTE_PRE_ROLL,
    PRESETS,
    FeatureConfig,
    Features,
    SpectrogramConfig,
    compute_features,
    get_preset,
    needed_byte_ranges,
    spectrogram,
)

SR = 44100


def midi_hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def note(
    midi: float = 57, dur: float = 4.0, sr: int = SR, harmonics: int = 8, amp: float = 0.5, seed: int = 0
) -> np.ndarray:
    """A harmonic tone (partials falling as 1/k) with a 20 ms attack, a slow decay and a little noise."""
    t = np.arange(round(dur * sr)) / sr
    f0 = midi_hz(midi)
    y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, harmonics + 1) if f0 * k < sr / 2)
    y = y / np.max(np.abs(y)) * np.minimum(t / 0.02, 1.0) * np.exp(-t / (2 * dur))
    noise = np.random.default_rng(seed).standard_normal(len(t)) * 1e-3
    return amp * (y + noise)


def wav(samples: np.ndarray, sr: int = SR, **kwargs) -> bytes:
    buf = io.BytesIO()
    audio.write_wav(buf, samples, sr, **kwargs)
    return buf.getvalue()


class CountingReader(io.BytesIO):
    """BytesIO that records (offset, length) of every read."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.reads: list[tuple[int, int]] = []

    def read(self, n: int | None = -1) -> bytes:
        at = self.tell()
        out = super().read(n)
        self.reads.append((at, len(out)))
        return out


# --------------------------------------------------------------------------- configs


def test_seed_preset_reproduces_the_seed_shapes() -> None:
    seed = get_preset("seed")
    assert seed.pitch.shape == (22, 128)
    assert seed.instrument.shape == (44, 128)
    assert (seed.pitch.duration, seed.pitch.anchor, seed.pitch.scale, seed.pitch.db) == (0.5, "middle", "mel", False)
    assert (seed.instrument.anchor, seed.instrument.start_fraction) == ("start", 1 / 6)
    for cfg in (seed.pitch, seed.instrument):
        assert (cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.normalisation) == (22050, 2048, 512, "band_max")


def test_default_preset_is_constant_q_pitch_and_log_mel_instrument() -> None:
    default = get_preset("default")
    pitch, instrument = default.pitch, default.instrument
    assert pitch.scale == "cqt" and pitch.db and pitch.normalisation == "example" and pitch.anchor == "middle"
    assert instrument.scale == "mel" and instrument.db and instrument.anchor == "start"
    frequencies = pitch.band_frequencies()
    assert frequencies[0] <= midi_hz(21) + 1e-9 and frequencies[-1] >= midi_hz(108)  # MIDI 21..108 and more
    for cfg in (pitch, instrument):
        frames, bands = cfg.shape
        assert frames <= 64 and bands <= 128


def test_pcen_preset_is_default_with_pcen_for_the_instrument() -> None:
    default, other = get_preset("default"), get_preset("pcen")
    assert other.pitch == default.pitch
    assert other.instrument == dataclasses.replace(default.instrument, db=False, pcen=True)
    assert other.digest() != default.digest()


def test_n_frames_follows_centred_framing() -> None:
    assert SpectrogramConfig(duration=0.5).n_frames == 1 + 11025 // 512
    assert SpectrogramConfig(duration=0.7, sample_rate=44100, hop_length=256).n_frames == 1 + 30870 // 256
    assert SpectrogramConfig(duration=1.0, n_bands=40).shape == (44, 40)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": "bark"}, "unknown scale 'bark'"),
        ({"scale": "cqt", "n_bands": 120, "fmin": 27.5}, "above the Nyquist"),
        ({"scale": "cqt", "fmin": 0.0}, "above 0 Hz"),
        ({"fmin": 20000.0}, "Nyquist"),
        ({"anchor": "end"}, "unknown anchor"),
        ({"normalisation": "l2"}, "unknown normalisation"),
        ({"start_fraction": 1.0}, "start_fraction"),
        ({"duration": 0}, "duration"),
        ({"duration": float("nan")}, "finite"),
        ({"n_fft": 1023}, "even"),
        ({"hop_length": 0}, "hop_length"),
        ({"n_bands": 0}, "n_bands"),
        ({"sample_rate": 100}, "sample_rate"),
        ({"sample_rate": 22050.5}, "whole number"),
        ({"n_fft": "2048"}, "integer"),
        ({"db": "yes"}, "true or false"),
        ({"pcen": 1}, "true or false"),
        ({"pcen": True, "db": True}, "choose one"),
        ({"bins_per_octave": 0}, "bins_per_octave"),
    ],
)
def test_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SpectrogramConfig(**kwargs)


def test_digest_is_stable_and_follows_every_field() -> None:
    seed = get_preset("seed")
    assert len(seed.digest()) == 16 and int(seed.digest(), 16) >= 0
    assert seed.digest() == get_preset("seed").digest() == FeatureConfig.from_dict(seed.to_dict()).digest()
    if FEATURES_VERSION == 1:  # a change here means stored spectrograms are recomputed: bump on purpose only
        assert seed.digest() == "c9c6788406399950"
    assert get_preset("default").digest() != seed.digest()
    changed = {
        "sample_rate": 16000,
        "duration": 0.6,
        "anchor": "start",
        "start_fraction": 0.1,
        "n_fft": 1024,
        "hop_length": 256,
        "n_bands": 64,
        "scale": "cqt",
        "fmin": 30.0,
        "bins_per_octave": 24,
        "db": True,
        "normalisation": "example",
        "pcen": True,
    }
    assert set(changed) == {f.name for f in dataclasses.fields(SpectrogramConfig)}
    digests = {seed.digest()}
    for field, value in changed.items():
        kwargs = {field: value, **({"fmin": 30.0, "n_bands": 84} if field == "scale" else {})}
        variant = dataclasses.replace(seed, pitch=dataclasses.replace(seed.pitch, **kwargs))
        digests.add(variant.digest())
    assert len(digests) == 1 + len(changed)
    swapped = FeatureConfig(pitch=seed.instrument, instrument=seed.pitch)
    assert swapped.digest() != seed.digest()
    located = dataclasses.replace(seed, locate_note=True)
    assert located.digest() not in digests and "locate_note" not in seed.to_dict()  # old digests kept
    assert FeatureConfig.from_dict(located.to_dict()) == located
    with pytest.raises(ValueError, match="locate_note must be true or false"):
        FeatureConfig.from_dict({**seed.to_dict(), "locate_note": "yes"})


def test_from_dict_round_trips_and_coerces_numbers() -> None:
    for preset in PRESETS.values():
        assert FeatureConfig.from_dict(preset.to_dict()) == preset
    d = get_preset("seed").to_dict()
    d["instrument"]["duration"] = 1  # YAML often says 1 for 1.0: same config, same digest
    d["pitch"]["n_fft"] = 2048.0
    again = FeatureConfig.from_dict(d)
    assert again == get_preset("seed") and again.digest() == get_preset("seed").digest()
    assert isinstance(again.instrument.duration, float) and isinstance(again.pitch.n_fft, int)
    partial = FeatureConfig.from_dict({"pitch": {"duration": 0.5}, "instrument": {}})
    assert partial.pitch == SpectrogramConfig(duration=0.5)


def test_from_dict_rejects_unknown_and_missing_keys() -> None:
    d = get_preset("seed").to_dict()
    with pytest.raises(ValueError, match="unknown key 'colour'"):
        FeatureConfig.from_dict({**d, "colour": "red"})
    d["pitch"]["n_mels"] = 128
    with pytest.raises(
        ValueError, match=r"unknown key 'pitch\.n_mels' in the feature config; known keys: sample_rate,"
    ):
        FeatureConfig.from_dict(d)
    with pytest.raises(ValueError, match="no 'instrument' section"):
        FeatureConfig.from_dict({"pitch": {}})
    with pytest.raises(ValueError, match="instrument: unknown scale"):
        FeatureConfig.from_dict({"pitch": {}, "instrument": {"scale": "erb"}})
    with pytest.raises(ValueError, match="mapping"):
        FeatureConfig.from_dict(["pitch"])  # type: ignore[arg-type]


def test_get_preset_lists_known_names() -> None:
    assert get_preset("default") is PRESETS["default"]
    with pytest.raises(ValueError, match="unknown feature preset 'best'; known: seed, default"):
        get_preset("best")


# ----------------------------------------------------------------------- spectrograms


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_feature_shapes_and_finiteness(preset: str) -> None:
    config = get_preset(preset)
    features = compute_features(wav(note()), config)
    assert isinstance(features, Features)
    assert features.pitch.shape == config.pitch.shape and features.instrument.shape == config.instrument.shape
    assert features.pitch.dtype == np.float32 and features.instrument.dtype == np.float32
    assert np.isfinite(features.pitch).all() and np.isfinite(features.instrument).all()
    assert features.duration == pytest.approx(4.0) and features.sample_rate == SR


def test_seed_shapes_from_a_file() -> None:
    features = compute_features(wav(note(dur=3.0)), get_preset("seed"))
    assert features.pitch.shape == (22, 128)
    assert features.instrument.shape == (44, 128)


def test_band_max_normalisation() -> None:
    features = compute_features(wav(note()), get_preset("seed"))
    for spec in (features.pitch, features.instrument):
        peaks = spec.max(axis=0)
        assert spec.min() >= 0
        np.testing.assert_allclose(peaks[peaks > 0], 1.0, rtol=1e-6)
        assert (peaks > 0).mean() > 0.9  # the noise floor reaches nearly every band


def test_other_normalisations() -> None:
    y = note(dur=1.0, sr=22050)
    base = SpectrogramConfig(duration=1.0)
    z = spectrogram(y, dataclasses.replace(base, normalisation="example"))
    assert abs(float(z.mean())) < 1e-4 and float(z.std()) == pytest.approx(1.0, abs=1e-4)
    assert spectrogram(y, dataclasses.replace(base, normalisation="max")).max() == pytest.approx(1.0)
    raw = spectrogram(y, dataclasses.replace(base, normalisation="none"))
    assert raw.max() > 1.0
    db = spectrogram(y, dataclasses.replace(base, normalisation="none", db=True))
    assert db.max() == pytest.approx(0.0, abs=1e-5) and db.min() >= -80.0
    db_band = spectrogram(y, dataclasses.replace(base, normalisation="band_max", db=True))
    np.testing.assert_allclose(db_band.max(axis=0), 0.0, atol=1e-5)


def test_spectrogram_pads_and_crops_to_the_configured_length() -> None:
    cfg = SpectrogramConfig(duration=0.5, normalisation="none")
    y = note(dur=1.0, sr=22050)
    assert spectrogram(y[:100], cfg).shape == cfg.shape
    np.testing.assert_array_equal(spectrogram(y, cfg), spectrogram(y[:11025], cfg))
    silent = spectrogram(np.zeros(5), dataclasses.replace(cfg, normalisation="example", db=True))
    assert silent.shape == cfg.shape and np.isfinite(silent).all()
    with pytest.raises(ValueError, match="NaN"):
        spectrogram(np.array([0.0, np.nan]), cfg)
    with pytest.raises(ValueError, match="mono"):
        spectrogram(np.zeros((10, 2)), cfg)


def test_seed_matches_librosa_melspectrogram() -> None:
    """The seed preset equals librosa.load + melspectrogram (defaults) + per-band max, on the same windows."""
    import librosa

    y = note(dur=3.0, harmonics=12, seed=3)
    data = wav(y, bits=32, encoding="float")
    whole, _ = audio.load(data, 22050)  # = librosa.load(path) for a float32 mono file
    features = compute_features(data, get_preset("seed"))
    for spec, start, n in ((features.pitch, round(1.25 * 22050), 11025), (features.instrument, 11025, 22050)):
        reference = librosa.feature.melspectrogram(y=whole[start : start + n], sr=22050).T
        reference = reference / reference.max(axis=0, keepdims=True)
        np.testing.assert_allclose(spec, reference, atol=1e-4)


def test_pcen_matches_librosa_and_forgets_a_fixed_colour() -> None:
    """`features.pcen` is librosa.pcen (defaults, power of float audio scaled as int32); a fixed
    gain per band (a microphone's colour, 16x in power across the bands) moves its output < 10 %."""
    import librosa

    from instropitch.audio.features import pcen

    power = np.abs(np.random.default_rng(0).standard_normal((44, 128))) ** 2 * 1e-3
    power[10:] *= np.linspace(0.01, 1.0, 128)  # a note starting at frame 10, brighter towards the top
    reference = librosa.pcen(power.T * 2.0**31, sr=22050, hop_length=512).T
    np.testing.assert_allclose(pcen(power, 22050, 512), reference, rtol=1e-6, atol=1e-9)
    colour = np.linspace(0.25, 4.0, 128)  # -12 dB .. +12 dB across the bands
    late = slice(30, 44)  # once the average has caught up with the note
    plain, coloured = pcen(power, 22050, 512)[late], pcen(power * colour, 22050, 512)[late]
    change = coloured.mean(axis=0) / plain.mean(axis=0)  # per band; the colour spans 16x in power
    assert np.ptp(change) < 0.1 and np.all(np.abs(change - 1) < 0.1)


def test_a_short_note_is_padded() -> None:
    y = note(dur=0.2)
    for preset in ("seed", "default"):
        config = get_preset(preset)
        features = compute_features(wav(y), config)
        assert features.pitch.shape == config.pitch.shape and features.instrument.shape == config.instrument.shape
        assert np.isfinite(features.pitch).all() and np.isfinite(features.instrument).all()
    seed = compute_features(wav(y), get_preset("seed"))
    # The 0.5 s pitch window is centred on the 0.2 s note: silence on both sides of it.
    energy = seed.pitch.sum(axis=1)
    assert energy[0] == 0 and energy[-1] == 0 and energy[len(energy) // 2] > 0
    # The 1 s instrument window starts at 1/6 of the note and runs past its end.
    assert seed.instrument[-10:].max() == 0 and seed.instrument[:3].max() > 0


def test_silence_raises_silent_audio_error() -> None:
    with pytest.raises(audio.SilentAudioError, match="quiet.wav: silent: the pitch window"):
        compute_features(wav(np.zeros(SR * 2)), get_preset("default"), name="quiet.wav")
    tail_silent = note(dur=4.0)
    tail_silent[SR:] = 0.0  # the note ends early: the middle of the file is digital silence
    with pytest.raises(audio.SilentAudioError, match="pitch window"):
        compute_features(wav(tail_silent), get_preset("seed"), name="x.wav")
    quiet = note(amp=1e-5)  # below -80 dBFS after 16-bit quantisation
    with pytest.raises(audio.SilentAudioError):
        compute_features(wav(quiet, bits=32, encoding="float"), get_preset("seed"))
    audible = note(amp=1e-3)
    assert np.isfinite(compute_features(wav(audible), get_preset("seed")).pitch).all()


def test_never_nan_on_awkward_signals() -> None:
    t = np.arange(SR * 2) / SR
    signals = {
        "dc": np.full(SR * 2, 0.3),
        "click": np.where(np.arange(SR * 2) == SR, 0.9, 0.0),
        "square": 0.5 * np.sign(np.sin(2 * np.pi * 100 * t)),
        "full_scale_noise": np.random.default_rng(0).uniform(-1, 1, SR * 2),
        "nyquist": 0.5 * np.cos(np.pi * np.arange(SR * 2)),
    }
    for label, y in signals.items():
        for preset in PRESETS.values():
            try:
                features = compute_features(wav(y), preset, name=label)
            except audio.SilentAudioError:
                # constant DC is inaudible (refused as silent); a lone click can leave a window silent;
                # a tone at 22,050 Hz vanishes when resampled to 22,050 Hz
                assert label in ("dc", "click", "nyquist")
                continue
            assert np.isfinite(features.pitch).all() and np.isfinite(features.instrument).all(), label


@pytest.mark.parametrize("bins_per_octave", [12, 24])
def test_octave_shift_moves_the_cqt_peak_by_one_octave_of_bands(bins_per_octave: int) -> None:
    pitch = get_preset("default").pitch
    if bins_per_octave != 12:
        pitch = dataclasses.replace(pitch, bins_per_octave=24, n_bands=128, fmin=midi_hz(33))
    config = FeatureConfig(pitch=pitch, instrument=get_preset("default").instrument)
    peaks = {}
    for midi in (45, 57, 69):
        features = compute_features(wav(note(midi, dur=2.0)), config)
        peaks[midi] = int(features.pitch.mean(axis=0).argmax())
    step = bins_per_octave
    assert peaks[57] - peaks[45] == step and peaks[69] - peaks[57] == step
    expected = round((45 - 12 * np.log2(pitch.fmin_hz / 440) - 69) * bins_per_octave / 12)
    assert peaks[45] == expected  # the peak sits on the fundamental's band


def test_cqt_separates_adjacent_low_semitones() -> None:
    """E1 and F1 (41 and 44 Hz, TinySOL's lowest notes) peak on different bands."""
    cfg = get_preset("default").pitch
    peaks = [int(spectrogram(note(m, dur=1.0, sr=22050), cfg).mean(axis=0).argmax()) for m in (28, 29)]
    assert peaks == [28 - 21, 29 - 21]


# ------------------------------------------------------------------------ partial reads


def test_only_the_needed_byte_ranges_are_read() -> None:
    data = wav(note(dur=10.0))
    info = audio.read_info(data)
    for preset in PRESETS.values():
        preset = dataclasses.replace(preset, locate_note=False)
        ranges = needed_byte_ranges(info, preset)
        assert ranges == sorted(ranges) and all(n > 0 for _, n in ranges)
        for offset, length in ranges:
            assert info.data_offset <= offset and offset + length <= info.data_offset + info.data_size
        total = sum(n for _, n in ranges)
        assert total < 0.3 * info.data_size  # ~2.1 s of a 10 s note
        reader = CountingReader(data)
        compute_features(reader, preset, info=info)
        assert sorted(reader.reads) == ranges  # the two windows of a 10 s note do not overlap
        reader = CountingReader(data)
        compute_features(reader, preset)  # header too, in one small read
        header = [r for r in reader.reads if r[0] < info.data_offset]
        assert len(header) == 1 and header[0][1] <= audio.HEADER_READ_SIZE
        assert sum(n for at, n in reader.reads if at >= info.data_offset) <= total


def test_silence_before_a_note_leaves_its_spectrograms_as_they_were() -> None:
    """A recording's lead-in moves both windows with the note (`locate_note`); the whole-file placement does not follow."""
    y = note(dur=3.0)
    floor = np.random.default_rng(1).standard_normal(SR * 2).astype(np.float32) * 3e-5  # -90 dBFS of room
    config = get_preset("default")

    def lead_in(seconds: float) -> bytes:
        return wav(np.concatenate([floor[: round(seconds * SR)], y]))

    near = compute_features(lead_in(NOTE_PRE_ROLL), config)
    for seconds in (0.55, 1.25):  # windows on whole samples of the 22,050 Hz features, as the near one
        far = compute_features(lead_in(seconds), config)
        assert np.abs(far.instrument - near.instrument).max() < 0.05
        assert np.abs(far.pitch - near.pitch).max() < 0.05
    unlocated = dataclasses.replace(config, locate_note=False)
    assert np.abs(compute_features(lead_in(0.55), unlocated).instrument - near.instrument).max() > 1.0
    with pytest.raises(audio.SilentAudioError):  # the first second is all room
        compute_features(lead_in(1.25), unlocated)


def test_locating_the_note_reads_every_sample_once() -> None:
    data = wav(note(dur=10.0))
    info = audio.read_info(data)
    assert needed_byte_ranges(info, get_preset("default")) == [(info.data_offset, info.data_size)]
    reader = CountingReader(data)
    located = compute_features(reader, get_preset("default"), info=info)
    assert reader.reads == [(info.data_offset, info.data_size)]  # the windows are cut from those samples
    # the same spectrograms as reading the windows alone, when the note fills the file
    alone = compute_features(data, dataclasses.replace(get_preset("default"), locate_note=False))
    np.testing.assert_allclose(located.instrument, alone.instrument, atol=1e-5)
    np.testing.assert_allclose(located.pitch, alone.pitch, atol=1e-5)


def test_features_at_other_sample_rates_and_channel_counts() -> None:
    base = compute_features(wav(note(dur=3.0)), get_preset("default"))
    for sr, channels in ((48000, 1), (22050, 2), (96000, 1)):
        y = note(dur=3.0, sr=sr)
        features = compute_features(wav(y, sr, bits=24, channels=channels), get_preset("default"))
        assert features.sample_rate == sr
        assert features.pitch.shape == base.pitch.shape
        assert int(features.pitch.mean(axis=0).argmax()) == int(base.pitch.mean(axis=0).argmax())


def test_bad_files_raise_audio_errors() -> None:
    with pytest.raises(audio.NotAudioError, match="^junk.wav: not an audio file"):
        compute_features(b"definitely not audio", get_preset("seed"), name="junk.wav")
    with pytest.raises(audio.TooShortError):  # read up to its end (with a warning): 44 ms
        compute_features(wav(note(dur=1.0))[:2000], get_preset("seed"), name="cut.wav")
    with pytest.raises(audio.TruncatedError):
        compute_features(wav(note(dur=1.0))[:40], get_preset("seed"), name="cut.wav")


def test_fft_and_filters_compute_what_scipy_computes_bit_for_bit():
    """The compiled scipy modules are loaded without `scipy.fft`/`scipy.sparse` (start-up time), same numbers."""
    import scipy.fft
    from scipy.sparse import csr_array

    from instropitch.audio import features

    rng = np.random.default_rng(5)
    frames = rng.standard_normal((44, 8192)).astype(np.float32)
    got = features._pocketfft().r2c(frames, (1,), True, 0, None, 1)
    assert got.dtype == np.complex64 and np.array_equal(got, scipy.fft.rfft(frames, axis=-1))
    for scale, n_fft, bands, fmin in (("mel", 2048, 128, 0.0), ("logfreq", 8192, 96, 32.7)):
        filters, lo, hi = features._basis(scale, 22050, n_fft, bands, fmin, 12)
        basis = features._mel_basis(22050, n_fft, bands, fmin) if scale == "mel" else None
        if basis is None:
            basis = features._logfreq_basis(22050, n_fft, bands, fmin, 12)
        power = np.abs(rng.standard_normal((hi - lo, 44))).astype(np.float32) ** 2
        assert np.array_equal(filters.apply(power), csr_array(basis[:, lo:hi]) @ power), scale


def reference_spectrogram(y: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """The spectrogram the straightforward way (frames as rows, scipy's public rfft and CSR product, |X|² as
    real² + imag²): what the features computed before the STFT worked in place, and what models were trained on."""
    import scipy.fft
    from scipy.sparse import csr_array

    from instropitch.audio import features

    n = cfg.n_samples
    y = np.asarray(y, dtype=np.float32)[:n]
    y = np.pad(y, (0, n - len(y)))
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(y, cfg.n_fft // 2), cfg.n_fft)[:: cfg.hop_length]
    spec = scipy.fft.rfft(frames * features._window(cfg.n_fft), axis=-1)
    power = spec.real**2 + spec.imag**2
    if cfg.scale == "mel":
        basis = features._mel_basis(cfg.sample_rate, cfg.n_fft, cfg.n_bands, cfg.fmin_hz)
    else:
        basis = features._logfreq_basis(cfg.sample_rate, cfg.n_fft, cfg.n_bands, cfg.fmin_hz, cfg.bins_per_octave)
    _, lo, hi = features._basis(cfg.scale, cfg.sample_rate, cfg.n_fft, cfg.n_bands, cfg.fmin_hz, cfg.bins_per_octave)
    s = np.maximum((csr_array(basis[:, lo:hi]) @ np.ascontiguousarray(power[:, lo:hi].T)).T, 0.0)
    if cfg.db:
        s = 10.0 * np.log10(np.maximum(s, 1e-10)) - 10.0 * math.log10(max(float(s.max()), 1e-10))
        s = np.maximum(s, -features.TOP_DB)
    if cfg.pcen:
        s = features.pcen(s, cfg.sample_rate, cfg.hop_length)  # checked against librosa.pcen on its own
    return np.ascontiguousarray(features._normalise(s, cfg.normalisation, cfg.db), dtype=np.float32)


def signals(count: int, seed: int) -> list[np.ndarray]:
    """Noise and tones of odd lengths (shorter and longer than any window), quiet and loud."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        n = int(rng.integers(300, 40000))
        y = rng.standard_normal(n) * 10 ** rng.uniform(-4, 0)
        if i % 2:
            y = y * 1e-2 + np.sin(2 * np.pi * rng.uniform(30, 4000) * np.arange(n) / 22050)
        out.append(y.astype(np.float32))
    return out


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_spectrograms_equal_the_straightforward_computation_bit_for_bit(preset: str) -> None:
    """The in-place STFT (frames as columns, reused arrays) changes no number the models see."""
    cfg = get_preset(preset)
    for y in signals(12, seed=len(preset)):
        for window in (cfg.pitch, cfg.instrument):
            got, expected = spectrogram(y, window), reference_spectrogram(y, window)
            assert got.dtype == expected.dtype == np.float32
            assert np.array_equal(got, expected), (preset, window.scale, len(y))


def test_feature_threads_do_not_share_work_arrays() -> None:
    """Each thread computes with its own scratch arrays: concurrent spectrograms equal sequential ones."""
    from concurrent.futures import ThreadPoolExecutor

    cfg = get_preset("default")
    jobs = [(y, window) for y in signals(24, seed=7) for window in (cfg.pitch, cfg.instrument)]
    sequential = [spectrogram(y, window) for y, window in jobs]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(lambda job: spectrogram(*job), jobs * 3))
    for i, got in enumerate(concurrent):
        assert np.array_equal(got, sequential[i % len(jobs)]), i


def test_threads_that_first_ask_at_once_get_one_complete_fft_module(monkeypatch) -> None:
    """A fresh process's feature threads all ask for scipy's compiled FFT at the same moment."""
    import threading

    from instropitch.audio import features

    monkeypatch.setattr(features, "_LOADED", {})
    features._pocketfft.cache_clear()
    features._sparsetools.cache_clear()
    barrier, got = threading.Barrier(8), []

    def first_use() -> None:
        barrier.wait()
        got.append((features._pocketfft(), features._sparsetools()))

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(fft) for fft, _ in got}) == 1 and len({id(csr) for _, csr in got}) == 1
    assert hasattr(got[0][0], "r2c") and hasattr(got[0][1], "csr_matvecs")
    features._pocketfft.cache_clear()  # the next tests load through the restored cache
    features._sparsetools.cache_clear()
