"""Render-condition presets: each one measurably does what it says, and `dry` changes nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from instropitch import cli
from instropitch.synth import conditions, dataset
from instropitch.synth.conditions import CONDITIONS, Distance, MicColour, Player, Reverb
from instropitch.synth.sf2 import SoundFont, default_soundfont_path

SR = dataset.SAMPLE_RATE


@pytest.fixture(scope="module")
def gm() -> SoundFont:
    return SoundFont.load(default_soundfont_path())


def db(x: float) -> float:
    return 10 * math.log10(max(x, 1e-30))


def energy(x: np.ndarray) -> float:
    return float(np.sum(np.asarray(x, dtype=np.float64) ** 2))


def band_power(x: np.ndarray, lo: float, hi: float, sr: int = SR) -> float:
    """Mean power per FFT bin between lo and hi Hz."""
    spec = np.abs(np.fft.rfft(np.asarray(x, dtype=np.float64))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return float(np.mean(spec[(f >= lo) & (f < hi)]))


def tone(seconds_on: float, seconds_off: float, f0: float = 440.0, amp: float = 0.3) -> np.ndarray:
    """A harmonic tone, then silence: a note and its note-off."""
    t = np.arange(int(seconds_on * SR)) / SR
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    x = amp * x / np.max(np.abs(x))
    return np.concatenate([x, np.zeros(int(seconds_off * SR))]).astype(np.float32)


def note(abbr: str, midi: int | None = None) -> dataset.PlannedNote:
    notes = [n for n in dataset.build_manifest(0, instruments=[abbr]) if n.dynamics in ("mf", "ff")]
    if midi is not None:
        notes = [n for n in notes if n.midi == midi]
    return min(notes, key=lambda n: (abs(n.duration_s - 3.0), n.path))


# ------------------------------------------------------------------ registry


def test_registry_and_resolve() -> None:
    assert list(CONDITIONS) == ["dry", "room", "hall", "mic", "distant", "player", "mixed"]
    assert all(p.name == name and p.description for name, p in CONDITIONS.items())
    assert conditions.resolve(None) == ("dry",)
    assert conditions.resolve("") == ("dry",)
    assert conditions.resolve("room, Hall,room,") == ("room", "hall")
    assert conditions.resolve(["mic", "player"]) == ("mic", "player")
    with pytest.raises(ValueError, match=r"unknown render condition\(s\) 'reverb', 'Cave'; known: dry, room, hall"):
        conditions.resolve("room,reverb,Cave")
    # The CLI lists the same presets in its help (it cannot import numpy to ask).
    synth_parser = cli.build_parser()._subparsers._group_actions[0].choices["synth"]
    help_text = next(a.help for a in synth_parser._actions if "--conditions" in a.option_strings)
    assert all(name in help_text for name in CONDITIONS)


def test_draws_are_deterministic_and_in_range() -> None:
    for name, preset in CONDITIONS.items():
        a = preset.draw(np.random.default_rng(5))
        assert a == preset.draw(np.random.default_rng(5)), name
        assert a.name == name and a.tag.startswith(name)
    rng = np.random.default_rng(0)
    players = [conditions.draw_player(rng) for _ in range(300)]
    detunes = np.array([p.detune_cents for p in players])
    assert np.all(np.abs(detunes) <= 30) and detunes.min() < -20 and detunes.max() > 20
    assert {p.attack_add_s > 0 for p in players} == {True, False}
    own = np.array([p.own_vibrato for p in players if p.own_vibrato != (0.0, 0.0)])
    assert 100 < len(own) < 200  # about half the players swing their own way
    assert np.all((own[:, 0] >= 4.5) & (own[:, 0] <= 7.0) & (own[:, 1] >= 5.0) & (own[:, 1] <= 50.0))
    assert own[:, 1].min() < 8 and own[:, 1].max() > 35
    mics = [conditions.draw_mic(rng) for _ in range(300)]
    assert all(40 <= m.highpass_hz <= 250 and 5000 <= m.lowpass_hz <= 16000 for m in mics)
    assert all(-6 <= m.tilt_db_per_decade <= 6 for m in mics)
    dists = [conditions.draw_distance(rng) for _ in range(300)]
    assert all(-24 <= d.gain_db <= -6 and -65 <= d.noise_dbfs <= -45 for d in dists)
    assert {d.noise_colour for d in dists} == {"pink", "white"}
    tags = {conditions.mixed(rng).tag for _ in range(300)}
    assert len(tags) > 10 and all(t.startswith("mixed:") and len(t) > len("mixed:") for t in tags)
    assert not any("room" in t and "hall" in t for t in tags)


# ------------------------------------------------------------------ effects on test signals


@pytest.mark.parametrize(("draw", "lo", "hi"), [(conditions.draw_room, 0.2, 0.6), (conditions.draw_hall, 1.2, 2.5)])
def test_impulse_response_rt60(draw, lo: float, hi: float) -> None:
    for seed in range(6):
        reverb = draw(np.random.default_rng(seed))
        ir = reverb.impulse_response(SR)
        assert lo <= reverb.rt60_s <= hi
        assert conditions.rt60_estimate(ir, SR) == pytest.approx(reverb.rt60_s, rel=0.1)
        assert energy(ir) == pytest.approx(1.0, rel=1e-3)
        assert np.all(ir[: int(reverb.predelay_s * SR) - 1] == 0)  # pre-delay: silence first


def test_reverb_fills_the_note_off_and_keeps_length_and_peak() -> None:
    x = tone(1.0, 1.0)
    on = energy(x[:SR])
    after = slice(int(1.05 * SR), int(1.4 * SR))
    late = slice(int(1.5 * SR), int(1.9 * SR))
    room = Reverb(rt60_s=0.4, wet=0.4, seed=1).apply(x, SR)
    hall = Reverb(rt60_s=2.0, wet=0.4, predelay_s=0.03, seed=1).apply(x, SR)
    for y in (room, hall):
        assert len(y) == len(x) and y.dtype == np.float32 and np.all(np.isfinite(y))
        assert np.max(np.abs(y)) == pytest.approx(np.max(np.abs(x)), rel=1e-5)
        assert db(energy(y[after]) / on) > -40  # the dry signal has none at all there
    assert energy(x[after]) == 0
    # The hall still rings where the small room has died away.
    assert db(energy(hall[late]) / energy(room[late])) > 20
    # The decay of the reverberant tail itself gives back the RT60.
    for y, rt60 in ((room, 0.4), (hall, 2.0)):
        tail = y[int(1.0 * SR) + int(0.05 * SR) :]
        assert conditions.rt60_estimate(tail, SR) == pytest.approx(rt60, rel=0.25)


def test_mic_band_limits_cut_outside_the_band() -> None:
    x = np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32) * 0.1
    mic = MicColour(highpass_hz=200.0, lowpass_hz=6000.0)
    y = mic.apply(x, SR)
    assert len(y) == len(x) and np.all(np.isfinite(y))
    mid = band_power(y, 500, 2000) / band_power(x, 500, 2000)
    assert db(band_power(y, 20, 60) / band_power(x, 20, 60) / mid) < -18  # 12 dB/octave below 200 Hz
    assert db(band_power(y, 12000, 20000) / band_power(x, 12000, 20000) / mid) < -20  # 24 dB/octave above 6 kHz
    # Random presets do what their parameters say, band by band.
    rng = np.random.default_rng(3)
    for _ in range(4):
        mic = conditions.draw_mic(rng)
        y = mic.apply(x, SR)
        ref = db(band_power(y, 900, 1100) / band_power(x, 900, 1100))
        for lo, hi in ((100, 140), (300, 400), (3000, 3500), (mic.lowpass_hz * 1.2, mic.lowpass_hz * 1.35)):
            f = np.linspace(lo, hi, 200)
            expected = db(np.mean(mic.response(f) ** 2)) - db(np.mean(mic.response(np.linspace(900, 1100, 200)) ** 2))
            measured = db(band_power(y, lo, hi) / band_power(x, lo, hi)) - ref
            assert measured == pytest.approx(expected, abs=1.0), (mic, lo)
    tilt_up = MicColour(tilt_db_per_decade=6.0).apply(x, SR)
    tilt_down = MicColour(tilt_db_per_decade=-6.0).apply(x, SR)
    white = db(band_power(x, 8000, 10000) / band_power(x, 80, 120))
    two_decades = 6.0 * math.log10(9000 / 100)  # +-6 dB per decade, about 11.7 dB from 100 Hz to 9 kHz
    assert db(band_power(tilt_up, 8000, 10000) / band_power(tilt_up, 80, 120)) - white == pytest.approx(
        two_decades, abs=1.0
    )
    assert db(band_power(tilt_down, 8000, 10000) / band_power(tilt_down, 80, 120)) - white == pytest.approx(
        -two_decades, abs=1.0
    )


def test_distance_lowers_level_and_raises_the_noise_floor() -> None:
    x = np.concatenate([np.zeros(SR // 2, dtype=np.float32), tone(1.0, 0.2)])
    d = Distance(gain_db=-9.0, noise_dbfs=-50.0, noise_colour="white", seed=4)
    y = d.apply(x, SR)
    assert len(y) == len(x) and np.all(np.isfinite(y))
    note_part = slice(SR // 2, SR // 2 + SR)
    assert db(energy(y[note_part]) / energy(x[note_part])) == pytest.approx(-9.0, abs=0.3)
    floor = 10 * math.log10(np.mean(y[: SR // 2].astype(np.float64) ** 2))
    assert floor == pytest.approx(-50.0, abs=0.5)
    pink = Distance(gain_db=-9.0, noise_dbfs=-50.0, noise_colour="pink", seed=4).apply(x, SR)
    assert db(band_power(pink[: SR // 2], 50, 200) / band_power(pink[: SR // 2], 5000, 20000)) > 10
    # A quiet note far away keeps its noise `min_snr_db` (24 dB) below its peak.
    quiet = Distance(gain_db=-24.0, noise_dbfs=-45.0, seed=4)
    y = quiet.apply(x * 0.05, SR)
    peak_db = 20 * math.log10(0.3 * 0.05) - 24.0  # the note's peak after the gain, before the noise
    floor = 10 * math.log10(np.mean(y[: SR // 2].astype(np.float64) ** 2))
    assert floor == pytest.approx(peak_db - quiet.min_snr_db, abs=0.5)


# ------------------------------------------------------------------ presets in a real render


def render(n: dataset.PlannedNote, sf: SoundFont, condition: conditions.Condition | None) -> np.ndarray:
    y = dataset.render_audio(n, sf, condition=condition)
    assert y.dtype == np.int16 and len(y) == int(round(n.duration_s * SR))
    assert np.max(np.abs(y.astype(np.int32))) < 32767  # never clipped
    return y.astype(np.float64) / 32768


@pytest.mark.parametrize("name", list(CONDITIONS))
def test_every_preset_renders_a_clean_file(gm: SoundFont, name: str) -> None:
    n = note("Fl")
    for seed in range(2):
        condition = CONDITIONS[name].draw(np.random.default_rng(seed))
        y = render(n, gm, condition)
        assert np.max(np.abs(y)) > 10 ** (-48 / 20)  # still a note, even far away and pp
        if name == "dry":
            assert condition is conditions.DRY
        else:
            assert not np.array_equal(y, render(n, gm, None)), name


def test_room_and_hall_raise_the_energy_after_note_off(gm: SoundFont) -> None:
    n = note("TpC")
    dry = render(n, gm, None)

    def tail_share(y: np.ndarray) -> float:
        return db(energy(y[-int(0.3 * SR) :]) / energy(y))

    room = render(n, gm, conditions.Condition("room", effects=(Reverb(rt60_s=0.5, wet=0.4, seed=2),)))
    hall = render(n, gm, conditions.Condition("hall", effects=(Reverb(rt60_s=2.0, wet=0.5, seed=2),)))
    assert tail_share(room) > tail_share(dry) + 3
    assert tail_share(hall) > tail_share(room)


def test_mic_preset_band_limits_in_a_render(gm: SoundFont) -> None:
    # TimGM6mb has little above 8 kHz (the faint noise floor is all there is), so the
    # band limits are set where the notes have energy: 400 Hz - 2 kHz.
    mic = conditions.Condition("mic", effects=(MicColour(highpass_hz=400.0, lowpass_hz=2000.0),))
    for abbr, midi, band, limit in (("Vn", 88, (4000, 6000), -25), ("BTb", 40, (60, 130), -20)):
        n = note(abbr, midi)
        dry, coloured = render(n, gm, None), render(n, gm, mic)
        ref = band_power(coloured, 700, 1400) / band_power(dry, 700, 1400)
        assert db(band_power(coloured, *band) / band_power(dry, *band) / ref) < limit, (abbr, band)


def test_distant_preset_in_a_render(gm: SoundFont) -> None:
    n = note("Ob")
    dry = render(n, gm, None)
    d = Distance(gain_db=-15.0, noise_dbfs=-55.0, noise_colour="white", seed=9)
    far = render(n, gm, conditions.Condition("distant", effects=(d,)))
    held = slice(int(0.3 * SR), int(1.5 * SR))
    assert db(energy(far[held]) / energy(dry[held])) == pytest.approx(-15.0, abs=1.0)
    lead = slice(0, int(0.004 * SR))  # before the onset (the lead-in is at least 5 ms)
    assert 10 * math.log10(np.mean(far[lead] ** 2)) == pytest.approx(-55.0, abs=2.0)
    assert 10 * math.log10(np.mean(dry[lead] ** 2)) < -68


def test_player_detunes_within_30_cents_and_keeps_the_label(gm: SoundFont) -> None:
    from support.pitch import estimate_f0

    n = note("ClBb", 67)  # no vibrato of its own: a clean f0
    segment = slice(int(0.4 * SR), int(1.6 * SR))
    f_dry = estimate_f0(render(n, gm, None)[segment])
    for detune in (-28.0, 17.0):
        played = render(n, gm, conditions.Condition("player", player=Player(detune_cents=detune)))
        f = estimate_f0(played[segment])
        assert 1200 * math.log2(f / f_dry) == pytest.approx(detune, abs=3.0)
        assert round(69 + 12 * math.log2(f / 440.0)) == n.midi  # still the labelled note
    # Drawn players: offsets measured within +-30 cents (plus the few cents of a take).
    rng = np.random.default_rng(11)
    for _ in range(3):
        condition = conditions.player(rng)
        f = estimate_f0(render(n, gm, condition)[segment])
        assert abs(1200 * math.log2(f / f_dry) - condition.player.detune_cents) < 3.0
        assert abs(1200 * math.log2(f / f_dry)) <= 31.0


def test_a_players_own_vibrato_replaces_the_instruments_but_never_reaches_a_free_reed() -> None:
    own = Player(vibrato_depth_scale=0.5, added_vibrato=(5.0, 4.0), own_vibrato=(6.0, 40.0))
    assert own.vibrato(5.6, 14.0) == (6.0, 40.0)  # a violin's usual swing, played the player's way
    assert own.vibrato(0.0, 0.0) == (6.0, 40.0)  # a trumpet's none too
    assert own.vibrato(0.0, 0.0, may_add=False) == (0.0, 0.0)  # the accordion
    usual = Player(vibrato_rate_scale=2.0, vibrato_depth_scale=0.5, added_vibrato=(5.0, 4.0))
    assert usual.vibrato(5.6, 14.0) == (11.2, 7.0)
    assert usual.vibrato(0.0, 0.0) == (5.0, 4.0)


def test_player_attack_and_vibrato(gm: SoundFont) -> None:
    n = note("TpC")

    def rise_s(y: np.ndarray) -> float:
        frames = np.sqrt(np.mean(y[: len(y) // 256 * 256].reshape(-1, 256) ** 2, axis=1))
        top = frames.max()
        return (np.argmax(frames > 0.9 * top) - np.argmax(frames > 0.1 * top)) * 256 / SR

    fast = render(n, gm, conditions.Condition("player", player=Player(attack_scale=0.3)))
    slow = render(n, gm, conditions.Condition("player", player=Player(attack_scale=4.0, attack_add_s=0.15)))
    assert rise_s(slow) > rise_s(fast) + 0.1
    # A trumpet has no vibrato; a player may add a light one, which the pitch track shows.
    from support.pitch import estimate_f0

    plain = render(n, gm, None)
    wobbly = render(n, gm, conditions.Condition("player", player=Player(added_vibrato=(5.0, 10.0))))

    def pitch_spread(y: np.ndarray) -> float:
        hop = int(0.025 * SR)
        f = [estimate_f0(y[i : i + 4096]) for i in range(int(0.5 * SR), int(1.5 * SR), hop)]
        return float(np.ptp(1200 * np.log2(np.array(f) / np.median(f))))

    assert pitch_spread(wobbly) > pitch_spread(plain) + 8
