"""Recordings of single notes written as an SF2 (npm's tonejs-instruments) and fonts that lack an instrument."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from instropitch import tinysol
from instropitch.synth import dataset, player, recordings, tsf
from instropitch.synth.sf2 import SoundFont

SR = dataset.SAMPLE_RATE


def recorded_note(midi: int, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    """A decaying harmonic tone at `midi`: what a recording of a held note looks like to the players."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = float(tinysol.midi_to_hz(midi))
    tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    return (0.3 * tone * np.exp(-t)).astype(np.float32)


def write_set(path: Path) -> Path:
    """Violin recordings at G3 and C5 and a flute at C5: a set without the other 12 of TinySOL's instruments."""
    violin = {55: recorded_note(55), 72: recorded_note(72)}
    return recordings.write_recordings_soundfont(
        {40: ("violin", violin), 73: ("flute", {72: recorded_note(72)})}, SR, path, "recordings"
    )


def test_each_key_plays_the_nearest_recording_and_the_ends_reach_the_keyboard_edges() -> None:
    assert recordings.nearest_key_ranges([60]) == [(0, 127)]
    assert recordings.nearest_key_ranges([55, 60, 72]) == [(0, 57), (58, 66), (67, 127)]  # 57.5 and 66: ties go low
    with pytest.raises(ValueError, match="distinct and sorted"):
        recordings.nearest_key_ranges([60, 55])
    with pytest.raises(ValueError, match="distinct and sorted"):
        recordings.nearest_key_ranges([])


def test_the_written_set_has_a_preset_per_recorded_instrument_and_names_the_rest_as_lacking(tmp_path: Path) -> None:
    sf = SoundFont.load(write_set(tmp_path / "set.sf2"))

    assert [(p.program, p.name) for p in sf.presets] == [(40, "040 violin"), (73, "073 flute")]
    assert dataset.lacking_instruments(sf) == set(tinysol.INSTRUMENT_ABBRS) - {"Vn", "Fl"}
    assert dataset.borrowed_instruments(sf) == {}
    (voice,) = sf.voices(40, 64, 100)
    assert (voice.root_key, voice.loops) == (72, False)  # 64 is nearer C5 (72) than G3 (55)
    assert not (tmp_path / "set.sf2.part").exists()


@pytest.mark.parametrize("midi", [50, 57, 64, 79])
def test_the_recordings_play_in_tune_between_their_roots_and_end_with_the_recording(tmp_path: Path, midi: int) -> None:
    path = write_set(tmp_path / "set.sf2")
    y = player.render_note(SoundFont.load(path), 40, midi, 100, 2.0, SR, release_s=0.1)

    assert abs(dataset.tuning_error(y, midi, SR)) < 3.0
    assert np.abs(y[int(1.9 * SR) :]).max() < 1e-3  # no loop: the ~1-s recording (moved up or down) has ended
    if tsf.available():
        z = tsf.play(str(path), 40, midi, 100, 1.0, 0.1, SR)
        assert abs(dataset.tuning_error(z, midi, SR)) < 3.0


def test_a_font_lacking_an_instrument_leaves_its_notes_to_the_fonts_that_have_it(tmp_path: Path) -> None:
    from instropitch.synth.sf2 import default_soundfont_path

    small = write_set(tmp_path / "set.sf2")
    two = {"rec": small, "tim": default_soundfont_path()}
    plan = dataset.plan_render(two, 2, instruments=["Vn", "Ob"], max_pitches=2)
    assert plan.borrowed["rec"] >= {"Ob"} and "Vn" not in plan.borrowed["rec"]
    assert {n.row.instrument_abbr for n in plan.planned["rec"]} == {"Vn"}
    assert {n.row.instrument_abbr for n in plan.planned["tim"]} == {"Vn", "Ob"}
    kept = dataset.plan_render(two, 2, instruments=["Vn", "Ob"], max_pitches=2, keep_borrowed=True)
    assert "Ob" in kept.borrowed["rec"]  # kept borrowed notes, but no font plays a program it has not

    with pytest.raises(ValueError, match=r"set\.sf2: no bank-0 preset for GM program\(s\) \[68\]"):
        dataset.plan_render({"rec": small}, 2, instruments=["Vn", "Ob"], max_pitches=2)


def _chunk_sizes(data: bytes, start: int, end: int) -> list[tuple[bytes, int]]:
    """(id, size) of every RIFF chunk between `start` and `end`, descending into LIST chunks."""
    out = []
    while start < end:
        cid, size = data[start : start + 4], int.from_bytes(data[start + 4 : start + 8], "little")
        out.append((cid, size))
        if cid == b"LIST":
            out += _chunk_sizes(data, start + 12, start + 8 + size)
        start += 8 + size + size % 2
    return out


@pytest.mark.parametrize("name", ["tonejs-instruments", "FreePats"])  # 18 and 8 characters
def test_every_chunk_of_the_written_sf2_has_an_even_size_as_fluidsynth_requires(tmp_path: Path, name: str) -> None:
    path = recordings.write_recordings_soundfont(
        {40: ("violin", {55: recorded_note(55, 0.1)})}, SR, tmp_path / "a.sf2", name
    )
    data = path.read_bytes()

    sizes = _chunk_sizes(data, 12, len(data))
    assert (b"INAM", 20 if len(name) == 18 else 10) in sizes  # the name, its zero, one more zero when odd
    assert all(size % 2 == 0 for _, size in sizes), sizes
