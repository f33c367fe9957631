"""TinySoundFont as the second SF2 player: in tune, the performance applied, and sources per font and player."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from instropitch import synth
from instropitch.synth import dataset, tsf
from instropitch.synth.sf2 import default_soundfont_path
from instropitch.tinysol import METADATA_FILENAME, parse_metadata

pytestmark = pytest.mark.skipif(not tsf.available(), reason="tinysoundfont is not installed (make venv installs it)")

SR = dataset.SAMPLE_RATE
FLUTE, ACCORDION = 73, 21


def _gm() -> str:
    return str(default_soundfont_path())


def _cents_off(y: np.ndarray, midi: int) -> float:
    return dataset.tuning_error(y, midi, SR)


def test_a_note_is_hold_plus_release_long_and_the_same_every_time() -> None:
    y = tsf.play(_gm(), FLUTE, 69, 82, 1.0, 0.25, SR)
    assert y.dtype == np.float32 and len(y) == int(1.25 * SR)
    assert np.all(np.isfinite(y)) and np.abs(y[: SR // 2]).max() > 0.01
    assert np.array_equal(y, tsf.play(_gm(), FLUTE, 69, 82, 1.0, 0.25, SR))  # nothing left over from a note


def test_detune_moves_the_pitch_by_as_many_cents() -> None:
    plain = _cents_off(tsf.play(_gm(), FLUTE, 69, 82, 1.0, 0.0, SR), 69)
    sharp = _cents_off(tsf.play(_gm(), FLUTE, 69, 82, 1.0, 0.0, SR, detune_cents=30.0), 69)
    assert sharp - plain == pytest.approx(30.0, abs=2.0)


def test_vibrato_bends_the_pitch_around_the_note_and_attack_softens_the_onset() -> None:
    plain = tsf.play(_gm(), FLUTE, 69, 82, 1.5, 0.0, SR)
    wobbly = tsf.play(_gm(), FLUTE, 69, 82, 1.5, 0.0, SR, vibrato_hz=5.0, vibrato_cents=40.0)
    assert not np.allclose(plain, wobbly)
    assert abs(_cents_off(wobbly, 69) - _cents_off(plain, 69)) < 25  # around the same pitch, not shifted
    slow = tsf.play(_gm(), FLUTE, 69, 82, 1.5, 0.0, SR, attack_s=0.3)
    first = slice(0, int(0.05 * SR))
    assert np.abs(slow[first]).max() < 0.3 * np.abs(plain[first]).max()
    assert np.allclose(slow[int(0.3 * SR) :], plain[int(0.3 * SR) :])


def test_a_vibrato_note_is_each_block_rendered_after_its_own_bend() -> None:
    """The one-buffer render equals the plain reading of the performance: for every 64-frame block, set the bend
    the vibrato has at its start (faded in over 300 ms), render the block; the last block shorter."""
    import tinysoundfont

    hold, hz, depth = 0.7301, 5.5, 35.0
    got = tsf.play(_gm(), FLUTE, 69, 82, hold, 0.1, SR, vibrato_hz=hz, vibrato_cents=depth)
    ref = tinysoundfont.Synth(samplerate=SR, gain=0)
    ref.program_select(0, ref.sfload(_gm()), 0, FLUTE)
    ref.pitchbend_range(0, tsf.PITCHBEND_RANGE_SEMITONES)
    ref.set_tuning(0, 0.0)
    ref.noteon(0, 69, 82)
    n_on, blocks = int(round(hold * SR)), []
    assert n_on % tsf.BLOCK  # a shorter last block
    for start in range(0, n_on, tsf.BLOCK):
        t = start / SR
        cents = depth * min(t / 0.3, 1.0) * np.sin(2 * np.pi * hz * t)
        ref.pitchbend(0, int(np.clip(round(8192 + cents / (100 * tsf.PITCHBEND_RANGE_SEMITONES) * 8192), 0, 16383)))
        blocks.append(np.frombuffer(ref.generate(min(tsf.BLOCK, n_on - start)), dtype=np.float32))
    ref.noteoff(0, 69)
    blocks.append(np.frombuffer(ref.generate(int(0.1 * SR)), dtype=np.float32))
    want = np.concatenate(blocks).reshape(-1, 2).mean(axis=1)
    assert got.shape == want.shape and np.array_equal(got, want)
    assert len(set(tsf._bends(n_on, SR, hz, depth).tolist())) > 20  # the bend moves


def test_rendered_notes_are_in_tune_even_where_the_font_is_not() -> None:
    """TimGM6mb's accordion plays 68 cents low over MIDI 81-96 through TinySoundFont, a semitone
    wrong by its label; the measured channel tuning puts every render within a few cents of it."""
    assert dataset.centre_tuning_error(tsf.play(_gm(), ACCORDION, 88, 82, 2.0, 0.0, SR), 88, SR) < -60
    notes = dataset.build_manifest(0, instruments=["Acc", "Fl"], max_pitches=12)
    assert any(n.midi in range(81, 97) for n in notes if n.program == ACCORDION)
    for note in notes:
        y = dataset.render_audio_tsf(note, _gm()).astype(np.float32)
        # the take's own detune (up to 6 cents) and the layers' balance over a long note remain
        assert abs(dataset.centre_tuning_error(y, note.midi, SR)) < 20, note.path
    assert dataset.render_audio_tsf(notes[0], _gm()).dtype == np.int16


def test_a_key_no_zone_covers_is_played_from_the_nearest_one_retuned() -> None:
    assert np.abs(tsf.play(_gm(), ACCORDION, 109, 82, 0.5, 0.0, SR)).max() < 1e-4  # C#8: silent in TinySoundFont
    pressed, cents = dataset.tsf_tuning(_gm(), ACCORDION, 109)
    assert pressed == 108 and 80 < cents < 120
    (note,) = [n for n in dataset.build_manifest(0, instruments=["Acc"]) if n.midi == 109][:1]
    y = dataset.render_audio_tsf(note, _gm()).astype(np.float32)
    assert np.abs(y).max() > 1000 and abs(dataset.centre_tuning_error(y, 109, SR)) < 20


def test_every_font_is_played_by_every_player_under_its_own_name() -> None:
    fonts = {"a": Path("A.sf2"), "b": Path("B.sf2")}
    got = dataset.player_sources(fonts, synth.PLAYERS)
    assert list(got) == ["a", "a-tsf", "b", "b-tsf"]
    assert got["a-tsf"] == (Path("A.sf2"), "tinysoundfont") and got["b"] == (Path("B.sf2"), "builtin")
    for bad in ([], ["builtin", "builtin"], ["fluidsynth"]):
        with pytest.raises(ValueError, match="at most once"):
            dataset.player_sources(fonts, bad)
    with pytest.raises(ValueError, match="collide"):
        dataset.player_sources({"a": Path("A.sf2"), "a-tsf": Path("B.sf2")}, synth.PLAYERS)


def test_without_the_wheel_only_the_builtin_player_is_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tsf, "available", lambda: False)
    assert synth.available_players() == ("builtin",)
    with pytest.raises(ValueError, match="make venv"):
        dataset.player_sources({"a": Path("A.sf2")}, synth.PLAYERS)


def test_a_shared_render_with_both_players_deals_each_note_once(tmp_path: Path) -> None:
    small = {"instruments": ["Ob", "Vc"], "max_pitches": 4}
    out = tmp_path / "both"
    summary = synth.render_dataset(
        out,
        soundfont={"gm": default_soundfont_path()},
        workers=1,
        progress=False,
        share=True,
        players=synth.PLAYERS,
        **small,
    )
    planned = {n.path for n in dataset.build_manifest(0, **small)}
    rows = {name: parse_metadata(out / name / METADATA_FILENAME).rows for name in ("gm", "gm-tsf")}
    paths = {name: {r.path for r in got} for name, got in rows.items()}
    assert paths["gm"].isdisjoint(paths["gm-tsf"]) and paths["gm"] | paths["gm-tsf"] == planned
    with open(out / "gm-tsf" / METADATA_FILENAME, newline="") as handle:
        assert {row["Source"] for row in csv.DictReader(handle)} == {"gm-tsf"}
    assert all((out / "gm-tsf" / p).is_file() for p in paths["gm-tsf"])
    assert summary.files == len(planned) and [s.source for s in summary.sources] == ["gm", "gm-tsf"]


def test_the_cli_offers_the_players_synth_has() -> None:
    from instropitch import cli

    synth_cmd = cli.build_parser()._subparsers._group_actions[0].choices["synth"]
    (player,) = [a for a in synth_cmd._actions if a.dest == "player"]
    assert tuple(player.choices) == synth.PLAYERS
