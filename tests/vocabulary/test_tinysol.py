"""The TinySOL dataset model: pitch names, instruments, and the metadata parser."""

from __future__ import annotations

import io

import numpy as np
import pytest

from instropitch import tinysol
from instropitch.tinysol import (
    INSTRUMENTS,
    METADATA_COLUMNS,
    MetadataError,
    make_row,
    midi_to_note_octave,
    midi_to_pitch,
    parse_metadata,
    pitch_to_midi,
    split_pitch,
    write_metadata,
)

HEADER = ",".join(METADATA_COLUMNS)
GOOD = [
    "Brass/Bass_Tuba/ordinario/BTb-ord-F#1-pp-N-N.wav,2,Brass,BTb,Bass Tuba,ord,ordinario,F#1,30,pp,0,0,,FALSE",
    "Brass/Bass_Tuba/ordinario/BTb-ord-G1-pp-N-R100u.wav,4,Brass,BTb,Bass Tuba,ord,ordinario,G1,31,pp,0,0,,TRUE",
    "Strings/Violoncello/ordinario/Vc-ord-C2-pp-4c-N.wav,1,Strings,Vc,Cello,ord,ordinario,C2,36,pp,0,3,4.0,FALSE",
    "Keyboards/Accordion/ordinario/Acc-ord-A6-p-alt2-N.wav,0,Keyboards,Acc,Accordion,ord,ordinario,A6,93,p,1,2,,FALSE",
]


def csv_text(*rows: str) -> bytes:
    return ("\r\n".join([HEADER, *rows]) + "\r\n").encode()


def test_pitch_round_trip_over_the_piano_range():
    for midi in range(21, 109):
        name = midi_to_pitch(midi)
        assert pitch_to_midi(name) == midi
        note, octave = split_pitch(name)
        assert (note, octave) == midi_to_note_octave(midi)
        assert "b" not in note  # sharps only
    assert midi_to_pitch(60) == "C4"
    assert midi_to_pitch(69) == "A4"
    assert midi_to_pitch(21) == "A0"
    assert midi_to_pitch(108) == "C8"
    assert pitch_to_midi("F#3") == 54
    assert tinysol.note_octave_to_midi("B", 3) == 59


def test_midi_and_hz_agree_with_librosa_and_each_other():
    librosa = pytest.importorskip("librosa")
    midis = np.array([21.0, 60.0, 69.0, 69.5, 108.0])
    assert tinysol.midi_to_hz(69) == pytest.approx(440.0)
    assert tinysol.hz_to_midi(261.6255653) == pytest.approx(60.0)
    np.testing.assert_allclose(tinysol.midi_to_hz(midis), librosa.midi_to_hz(midis), rtol=1e-12)
    np.testing.assert_allclose(tinysol.hz_to_midi(librosa.midi_to_hz(midis)), midis, atol=1e-9)
    assert tinysol.hz_to_midi(880.0) - tinysol.hz_to_midi(440.0) == pytest.approx(12.0)  # an octave


@pytest.mark.parametrize("bad", ["H4", "Bb3", "C", "4", "", "C#x", "E#"])
def test_bad_pitch_names_are_refused(bad):
    with pytest.raises(ValueError):
        pitch_to_midi(bad)


def test_instrument_table_matches_design():
    assert len(INSTRUMENTS) == 14
    assert sum(i.n_files for i in INSTRUMENTS) == 2913
    assert tinysol.INSTRUMENT_BY_ABBR["Vc"].directory == "Strings/Violoncello/ordinario"
    assert {i.family for i in INSTRUMENTS} == {"Brass", "Keyboards", "Strings", "Winds"}


def test_good_rows_parse_with_types():
    result = parse_metadata(csv_text(*GOOD))
    assert result.errors == []
    assert len(result.rows) == 4
    tuba, retuned, cello, acc = result.rows
    assert tuba.pitch_id == 30 and tuba.string_id is None and tuba.needed_retuning is False
    assert retuned.needed_retuning is True
    assert cello.string_id == 4 and cello.instance_id == 3 and cello.note == "C" and cello.octave == 2
    assert acc.dynamics == "p" and acc.dynamics_id == 1


def test_write_then_parse_reproduces_the_file_byte_for_byte():
    data = csv_text(*GOOD)
    rows = parse_metadata(data).rows
    out = io.StringIO(newline="")
    write_metadata(rows, out)
    assert out.getvalue().encode() == data


@pytest.mark.parametrize(
    ("row", "column", "words"),
    [
        (GOOD[0].replace(",BTb,Bass Tuba,", ",Xyl,Bass Tuba,"), "Instrument (abbr.)", "unknown instrument"),
        (GOOD[0].replace(",F#1,30,", ",H1,30,"), "Pitch", "not a pitch name"),
        (GOOD[0].replace(",F#1,30,", ",F#1,31,"), "Pitch ID", "not the MIDI number"),
        (GOOD[0].replace("BTb-ord-F#1-pp-N-N.wav", "tuba_F#1.wav"), "Path", "does not match"),
        (GOOD[0].replace("Brass/Bass_Tuba/", "Brass/Horn/"), "Path", "is not under"),
        (GOOD[0].replace(",pp,0,", ",fff,0,"), "Dynamics", "unknown dynamics"),
        (GOOD[0].replace(",2,Brass,", ",7,Brass,"), "Fold", "not a fold"),
        (GOOD[0].rsplit(",", 3)[0], "Instance ID", "columns"),
        (GOOD[0].replace(",FALSE", ",maybe"), "Needed digital retuning", "not TRUE or FALSE"),
    ],
)
def test_each_kind_of_bad_row_names_row_column_and_reason(row, column, words):
    result = parse_metadata(csv_text(GOOD[1], row, GOOD[2]))
    assert len(result.rows) == 2  # the good rows still load
    (error,) = result.errors
    assert error.row == 3  # line number in the file (header is line 1)
    assert error.column == column
    assert words in error.reason
    assert "row 3" in str(error) and column in str(error)


def test_duplicate_path_is_refused():
    result = parse_metadata(csv_text(GOOD[0], GOOD[0]))
    assert len(result.rows) == 1
    assert result.errors[0].column == "Path" and "duplicate" in result.errors[0].reason


def test_wrong_header_is_a_file_level_error():
    with pytest.raises(MetadataError, match="header"):
        parse_metadata(b"Path,Fold,Instrument\r\nx,1,Vn\r\n")
    with pytest.raises(MetadataError, match="empty"):
        parse_metadata(b"")


def test_extra_columns_after_the_fourteen_are_kept_apart():
    data = (HEADER + ",Source\r\n" + GOOD[0] + ",synth-a\r\n").encode()
    result = parse_metadata(data)
    assert result.errors == [] and result.extra_columns == ("Source",)


def test_make_row_builds_valid_paths():
    cello = tinysol.INSTRUMENT_BY_ABBR["Vc"]
    rows = [
        make_row(cello, 36, "pp", 1, instance_id=3, string_id=4),
        make_row(tinysol.INSTRUMENT_BY_ABBR["Acc"], 93, "p", 0, instance_id=2),
        make_row(tinysol.INSTRUMENT_BY_ABBR["Fl"], 72, "ff", 3, retune="T16u"),
    ]
    out = io.StringIO(newline="")
    write_metadata(rows, out)
    result = parse_metadata(out.getvalue().encode())
    assert result.errors == [] and result.rows == rows
    assert rows[0].path == "Strings/Violoncello/ordinario/Vc-ord-C2-pp-4c-N.wav"


def test_resampled_neighbours_name_their_origin_take():
    from instropitch.tinysol import resampled_from, take_key

    folder = "Strings/Violoncello/ordinario"
    assert resampled_from(f"{folder}/Vc-ord-C#2-pp-4c-R100u.wav", 37) == (folder, "Vc", "pp", "4c", 36)
    assert resampled_from(f"{folder}/Vc-ord-B1-mf-4c-R100d.wav", 35) == (folder, "Vc", "mf", "4c", 36)
    assert resampled_from(f"{folder}/Vc-ord-C2-pp-4c-T13d.wav", 36) is None  # fine tuning of the note itself
    assert resampled_from(f"{folder}/Vc-ord-C2-pp-4c-N.wav", 36) is None
    assert resampled_from("not/a/tinysol-name.wav", 36) is None
    assert take_key(f"{folder}/Vc-ord-C2-pp-4c-T13d.wav", 36) == take_key(f"{folder}/Vc-ord-C2-pp-4c-N.wav", 36)


def test_families_are_tinysols_top_folders_and_index_any_list_of_instruments():
    from instropitch.tinysol import FAMILIES, INSTRUMENTS, family_indices

    assert FAMILIES == ("Brass", "Keyboards", "Strings", "Winds")
    assert {i.family for i in INSTRUMENTS} == set(FAMILIES)
    assert [FAMILIES[k] for k in family_indices(["Vn", "Va", "Hn", "Acc", "Fl"])] == [
        "Strings",
        "Strings",
        "Brass",
        "Keyboards",
        "Winds",
    ]
