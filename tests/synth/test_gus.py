"""GUS patches (FreePats' format) read as TiMidity reads them and written as an SF2 that plays in tune."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.gus_patches import SUSTAINED, sample_bytes, wave, write_patch

from instropitch.synth import dataset, gus, player, tsf
from instropitch.synth.sf2 import SoundFont

SR = dataset.SAMPLE_RATE


def test_a_patch_is_read_with_its_ranges_root_loop_and_points(tmp_path: Path) -> None:
    low, n = wave(220.0, 22050, 20)
    eight = (np.arange(200) % 256).astype(np.uint8)
    path = write_patch(
        tmp_path / "x.pat",
        [
            sample_bytes(low, 22050, 100.0, 300.0, 220.0, loop=(10, n)),
            sample_bytes(eight, 11025, 300.0, 5000.0, 880.0, modes=gus.MODE_UNSIGNED | gus.MODE_ENVELOPE),
        ],
    )

    first, second = gus.read_patch(path)

    assert (first.sample_rate, first.low_hz, first.high_hz, first.root_hz) == (22050, 100.0, 300.0, 220.0)
    assert (first.loop_start, first.loop_end, first.loops) == (10, n, True)  # bytes -> points
    assert np.allclose(first.data, low / 32768.0)
    assert second.loops is False and len(second.data) == 200
    assert second.data[0] == -1.0 and second.data[128] == 0.0  # unsigned 8-bit, centred


def test_a_file_that_is_no_patch_or_is_cut_short_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "a.pat").write_bytes(b"RIFF" + b"\0" * 300)
    with pytest.raises(gus.PatchError, match=r"a\.pat: not a GUS patch"):
        gus.read_patch(tmp_path / "a.pat")
    with pytest.raises(gus.PatchError, match=r"c\.pat: a patch without samples"):
        gus.read_patch(write_patch(tmp_path / "c.pat", []))
    points, _ = wave(220.0, 22050, 4)
    whole = write_patch(tmp_path / "b.pat", [sample_bytes(points, 22050, 100.0, 300.0, 220.0)]).read_bytes()
    (tmp_path / "b.pat").write_bytes(whole[:-10])
    with pytest.raises(gus.PatchError, match=r"b\.pat: sample 0 of 1: .* the file ends before"):
        gus.read_patch(tmp_path / "b.pat")


def test_each_key_plays_the_first_sample_holding_it_and_keys_outside_the_nearest(tmp_path: Path) -> None:
    points, _ = wave(220.0, 22050, 4)
    samples = gus.read_patch(
        write_patch(
            tmp_path / "x.pat",
            [  # A3-A4 and A4-A5 share A4 (440 Hz): the first sample takes it
                sample_bytes(points, 22050, 220.0, 440.0, 330.0),
                sample_bytes(points, 22050, 440.0, 880.0, 660.0),
            ],
        )
    )

    assert gus.key_ranges(samples) == [(0, 0, 69), (1, 70, 127)]


def test_a_ping_pong_loop_is_played_there_and_back_as_one_forward_loop(tmp_path: Path) -> None:
    points = (np.arange(10) * 1000).astype("<i2")
    modes = SUSTAINED | gus.MODE_PINGPONG
    (sample,) = gus.read_patch(
        write_patch(tmp_path / "x.pat", [sample_bytes(points, 22050, 20, 9000, 440, (2, 6), modes)])
    )

    (zone,) = gus.zones([sample], "x")

    assert np.round(zone.data * 32768).astype(int).tolist() == [0, 1000, 2000, 3000, 4000, 5000, 4000, 3000]
    assert zone.loop == (2, 8)  # 2 3 4 5 4 3 | 2 3 4 5 ...


def test_the_envelope_holds_while_sustained_and_decays_when_not(tmp_path: Path) -> None:
    points, _ = wave(220.0, 22050, 4)
    slow = bytes([63, 63, 63, 0x80 | 10, 63, 63])  # the release stage at rate range 2
    half = bytes([255, 255, 128, 0, 0, 0])
    held, free, flat = gus.read_patch(
        write_patch(
            tmp_path / "x.pat",
            [
                sample_bytes(points, 22050, 20, 9000, 220, (0, 8), SUSTAINED, slow, half),
                sample_bytes(points, 22050, 20, 9000, 220, (0, 8), SUSTAINED & ~gus.MODE_SUSTAIN, slow, half),
                sample_bytes(points, 22050, 20, 9000, 220, (0, 8), gus.MODE_16BIT | gus.MODE_LOOP),
            ],
        )
    )

    sustained = gus.envelope(held)
    assert sustained["sustain_cb"] == pytest.approx(-200 * gus.LEVEL_POWER * np.log10(128 / 255))  # ~ -10 dB
    assert sustained["release_s"] == pytest.approx(128 * 2**13 / ((10 << 3) * 44100.0), rel=1e-6)
    assert gus.envelope(free)["sustain_cb"] == 1440.0  # runs into its release while held
    assert gus.envelope(free)["decay_s"] > sustained["decay_s"]
    assert gus.envelope(flat) == {"attack_s": 0.002, "decay_s": 0.002, "sustain_cb": 0.0, "release_s": 0.1}


def test_the_bank_zero_programs_of_a_timidity_config_are_read(tmp_path: Path) -> None:
    (tmp_path / "set.cfg").write_text(
        "drumset 0\n 35 Drum_000/035_Kick.pat\n\nbank 0\n\n 40\tTone_000/040_Violin.pat amp=120 # x\n 73 Tone_000/073_Flute.pat\n"
    )
    assert gus.read_config(tmp_path / "set.cfg") == {
        40: tmp_path / "Tone_000/040_Violin.pat",
        73: tmp_path / "Tone_000/073_Flute.pat",
    }


def _patch_set(tmp_path: Path) -> Path:
    """An SF2 written from a violin patch (two samples, 20 cents sharp roots) that also plays the viola."""
    low, n_low = wave(261.63 * 2 ** (20 / 1200), 22050, 50)
    high, n_high = wave(523.25 * 2 ** (20 / 1200), 22050, 50)
    violin = write_patch(
        tmp_path / "040_Violin.pat",
        [
            sample_bytes(low, 22050, 20.0, 400.0, 261.63 * 2 ** (20 / 1200), loop=(0, n_low)),
            sample_bytes(high, 22050, 400.0, 9000.0, 523.25 * 2 ** (20 / 1200), loop=(0, n_high)),
        ],
    )
    return gus.write_patch_soundfont({40: violin}, tmp_path / "set.sf2", "test set", lend={41: 40, 43: 42})


def test_a_patch_set_becomes_an_sf2_whose_lent_programs_are_seen_as_borrowed(tmp_path: Path) -> None:
    sf = SoundFont.load(_patch_set(tmp_path))

    assert [(p.program, p.name) for p in sf.presets] == [(40, "040 Violin"), (41, "040 Violin")]  # no cello to lend
    assert dataset.borrowed_instruments(sf) == {"Va": "Vn"}
    (voice,) = sf.voices(40, 60, 100)
    assert (voice.root_key, voice.pitch_cents, voice.loops) == (60, -20.0, True)
    assert not (tmp_path / "set.sf2.part").exists()


@pytest.mark.parametrize("midi", [55, 60, 64, 76])
def test_the_written_sf2_plays_in_tune_and_holds_beyond_the_sample(tmp_path: Path, midi: int) -> None:
    path = _patch_set(tmp_path)
    y = player.render_note(SoundFont.load(path), 40, midi, 100, 1.5, SR, release_s=0.1)

    assert abs(dataset.tuning_error(y, midi, SR)) < 3.0  # the 20-cent sharp roots corrected
    assert np.abs(y[int(1.2 * SR) : int(1.4 * SR)]).max() > 0.1  # looped: the samples last ~0.1-0.2 s
    if tsf.available():
        z = tsf.play(str(path), 40, midi, 100, 1.5, 0.1, SR)
        assert abs(dataset.tuning_error(z, midi, SR)) < 3.0
