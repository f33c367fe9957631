"""The synthetic TinySOL: manifest shape, rendered files, determinism and the CLI."""

from __future__ import annotations

import math
import re
import wave
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from instropitch import cli, tinysol
from instropitch.synth import dataset
from instropitch.tinysol import INSTRUMENTS, METADATA_FILENAME, parse_metadata

SMALL = {"instruments": ["Vn", "Fl"], "max_pitches": 3}


@pytest.fixture(scope="module")
def full() -> list[dataset.PlannedNote]:
    return dataset.build_manifest(seed=0)


@pytest.fixture(scope="module")
def small_render(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dataset.RenderSummary]:
    out = tmp_path_factory.mktemp("synth") / "tinysol"
    summary = dataset.render_dataset(out, seed=7, workers=2, progress=False, **SMALL)
    return out, summary


def read_wav(path: Path) -> tuple[np.ndarray, int, int, int]:
    with wave.open(str(path)) as handle:
        frames = handle.readframes(handle.getnframes())
        return (
            np.frombuffer(frames, dtype="<i2"),
            handle.getframerate(),
            handle.getsampwidth(),
            handle.getnchannels(),
        )


# ------------------------------------------------------------------ the full manifest (not rendered)


def test_full_manifest_mirrors_tinysol(full: list[dataset.PlannedNote]) -> None:
    assert abs(len(full) - 2913) <= 0.03 * 2913
    by_inst = defaultdict(list)
    for note in full:
        by_inst[note.row.instrument_abbr].append(note)
    assert set(by_inst) == set(tinysol.INSTRUMENT_ABBRS)
    for inst in INSTRUMENTS:
        notes = by_inst[inst.abbr]
        midis = {n.midi for n in notes}
        assert (min(midis), max(midis)) == (inst.midi_low, inst.midi_high), inst.abbr
        assert midis == set(range(inst.midi_low, inst.midi_high + 1)), f"{inst.abbr} misses pitches"
        assert abs(len(notes) - inst.n_files) <= max(3, 0.05 * inst.n_files), inst.abbr
        assert all(n.program == dataset.GM_PROGRAMS[inst.abbr] for n in notes)
    assert len({n.path for n in full}) == len(full)


def test_full_manifest_rows_parse_back(full: list[dataset.PlannedNote], tmp_path: Path) -> None:
    csv_path = tmp_path / METADATA_FILENAME
    tinysol.write_metadata([n.row for n in full], csv_path)
    result = parse_metadata(csv_path)
    assert result.errors == []
    assert len(result.rows) == len(full)


def test_folds_are_balanced(full: list[dataset.PlannedNote]) -> None:
    folds = Counter(n.row.fold for n in full)
    assert set(folds) == set(range(5))
    assert max(folds.values()) - min(folds.values()) <= 1
    for inst in INSTRUMENTS:
        per = Counter(n.row.fold for n in full if n.row.instrument_abbr == inst.abbr)
        assert max(per.values()) - min(per.values()) <= 2, (inst.abbr, per)


def test_dynamics_durations_and_retuning(full: list[dataset.PlannedNote]) -> None:
    dyn = Counter(n.dynamics for n in full)
    assert set(dyn) == {"pp", "p", "mf", "ff"}
    assert 5 <= dyn["p"] <= 20
    for d in ("pp", "mf", "ff"):
        assert 0.28 < dyn[d] / len(full) < 0.38
    assert all(dataset.MIN_DURATION_S <= n.duration_s <= dataset.MAX_DURATION_S for n in full)
    # Low notes are held longer than high ones.
    tuba = sorted((n for n in full if n.row.instrument_abbr == "BTb"), key=lambda n: n.midi)
    assert np.mean([n.duration_s for n in tuba[:20]]) > np.mean([n.duration_s for n in tuba[-20:]])
    retuned = [n.row for n in full if n.row.needed_retuning]
    assert 0 < len(retuned) < 0.1 * len(full)
    assert all(re.search(r"-T\d+[ud]\.wav$", r.path) for r in retuned)
    assert all(r.path.endswith("-N.wav") for r in (n.row for n in full) if not r.needed_retuning)


def test_string_numbers_are_playable(full: list[dataset.PlannedNote]) -> None:
    for note in full:
        row = note.row
        if row.instrument_abbr not in dataset.OPEN_STRINGS:
            assert row.string_id is None
            continue
        opens = dataset.OPEN_STRINGS[row.instrument_abbr]
        assert row.string_id in (1, 2, 3, 4)
        assert row.instance_id == row.string_id - 1
        assert f"-{row.string_id}c-" in row.path
        assert note.midi >= opens[row.string_id - 1], row.path
    # Several strings per instrument, the lowest notes only on the lowest string.
    for abbr, opens in dataset.OPEN_STRINGS.items():
        rows = [n.row for n in full if n.row.instrument_abbr == abbr]
        assert {r.string_id for r in rows} == {1, 2, 3, 4}
        assert {r.string_id for r in rows if r.pitch_id < opens[2]} == {4}


def test_accordion_takes(full: list[dataset.PlannedNote]) -> None:
    acc = [n.row for n in full if n.row.instrument_abbr == "Acc"]
    instances = Counter(r.instance_id for r in acc)
    assert instances[0] > instances[1] > instances[2] > 0
    assert max(instances) >= 4
    for r in acc:
        assert ("-N-" in r.path) if r.instance_id == 0 else (f"-alt{r.instance_id}-" in r.path)


def test_manifest_determinism(full: list[dataset.PlannedNote]) -> None:
    assert dataset.build_manifest(seed=0) == full
    other = dataset.build_manifest(seed=1)
    assert [n.row for n in other] != [n.row for n in full]
    assert {n.seed for n in other}.isdisjoint({n.seed for n in full})


def test_subsets_are_filters_of_the_full_plan(full: list[dataset.PlannedNote]) -> None:
    by_path = {n.path: n for n in full}
    small = dataset.build_manifest(seed=0, **SMALL)
    assert {n.row.instrument_abbr for n in small} == {"Vn", "Fl"}
    for abbr in ("Vn", "Fl"):
        inst = tinysol.INSTRUMENT_BY_ABBR[abbr]
        midis = {n.midi for n in small if n.row.instrument_abbr == abbr}
        assert len(midis) == 3 and {inst.midi_low, inst.midi_high} <= midis
    assert all(by_path[n.path] == n for n in small)

    tenth = dataset.build_manifest(seed=0, scale=0.1)
    counts = Counter(n.row.instrument_abbr for n in tenth)
    assert set(counts) == set(tinysol.INSTRUMENT_ABBRS)
    for inst in INSTRUMENTS:
        assert abs(counts[inst.abbr] - 0.1 * inst.n_files) <= 1
    assert abs(len(tenth) - 291) <= 10
    assert all(by_path[n.path] == n for n in tenth)
    # Stratified: the tenth still spans each instrument's range.
    acc = sorted(n.midi for n in tenth if n.row.instrument_abbr == "Acc")
    assert acc[0] < 40 and acc[-1] > 95


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"unknown instrument.*'Kazoo'.*known: BTb, Hn"):
        dataset.build_manifest(0, instruments=["Vn", "Kazoo"])
    with pytest.raises(ValueError, match="scale"):
        dataset.build_manifest(0, scale=0)
    with pytest.raises(ValueError, match="max_pitches"):
        dataset.build_manifest(0, max_pitches=0)
    assert {n.row.instrument_abbr for n in dataset.build_manifest(0, instruments=["vn", "FL"], max_pitches=1)} == {
        "Vn",
        "Fl",
    }


def test_render_rejects_unknown_instrument_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "never"
    with pytest.raises(ValueError, match="unknown instrument"):
        dataset.render_dataset(out, instruments=["Xylo"], progress=False)
    assert not out.exists()


def test_tuning_corrections_fix_the_accordion() -> None:
    from support.pitch import cents_off, estimate_f0

    from instropitch.synth import player
    from instropitch.synth.sf2 import SoundFont, default_soundfont_path

    sf = SoundFont.load(default_soundfont_path())
    # TimGM6mb's accordion plays C#6 (85) about 65 cents flat: two reed layers, both off.
    raw = player.render_note(sf, 21, 85, 100, 1.5)
    assert cents_off(estimate_f0(raw[int(0.3 * dataset.SAMPLE_RATE) : int(1.3 * dataset.SAMPLE_RATE)]), 85) < -40
    table = dataset.tuning_corrections(sf, 21, 85)
    assert len(table) == 2 and all(40 < c < 80 for c in table.values())
    note = next(n for n in dataset.build_manifest(0, instruments=["Acc"]) if n.midi == 85)
    x = dataset.render_audio(note, sf).astype(np.float64) / 32768
    assert abs(cents_off(estimate_f0(x[int(0.3 * dataset.SAMPLE_RATE) : int(1.5 * dataset.SAMPLE_RATE)]), 85)) < 15
    # An in-tune instrument needs (almost) nothing.
    assert all(abs(c) < 12 for c in dataset.tuning_corrections(sf, 40, 67).values())


# ------------------------------------------------------------------ a rendered tiny set


def test_render_writes_tinysol_layout(small_render: tuple[Path, dataset.RenderSummary]) -> None:
    out, summary = small_render
    result = parse_metadata(out / METADATA_FILENAME)
    assert result.errors == []
    planned = dataset.build_manifest(seed=7, **SMALL)
    assert sorted(r.path for r in result.rows) == sorted(n.path for n in planned)
    assert summary.files == len(planned) == len(result.rows)
    assert summary.out_dir == out
    wavs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))
    assert wavs == sorted(r.path for r in result.rows)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert summary.bytes == total
    assert "rendered" in str(summary) and str(summary.files) in str(summary) and "\n" not in str(summary)


def test_rendered_files_are_tinysol_wavs(small_render: tuple[Path, dataset.RenderSummary]) -> None:
    out, _ = small_render
    planned = {n.path: n for n in dataset.build_manifest(seed=7, **SMALL)}
    for path, note in planned.items():
        samples, rate, width, channels = read_wav(out / path)
        assert (rate, width, channels) == (44100, 2, 1), path
        seconds = len(samples) / rate
        assert 2.0 <= seconds <= 10.0 and seconds == pytest.approx(note.duration_s, abs=1e-3)
        peak = np.max(np.abs(samples.astype(np.int32)))
        assert 0.02 * 32767 < peak < 32767, path  # audible, never clipped


def test_rendered_pitch_and_dynamics(small_render: tuple[Path, dataset.RenderSummary]) -> None:
    from support.pitch import cents_off, estimate_f0

    out, _ = small_render
    planned = dataset.build_manifest(seed=7, **SMALL)
    peaks: dict[tuple[str, int, str | None], dict[str, float]] = defaultdict(dict)
    for note in planned:
        samples, rate, _, _ = read_wav(out / note.path)
        x = samples.astype(np.float64) / 32768
        f0 = estimate_f0(x[int(0.3 * rate) : int(1.8 * rate)], rate)
        assert abs(cents_off(f0, note.midi)) < 25, note.path  # vibrato included
        key = (note.row.instrument_abbr, note.midi, note.row.string_id)
        peaks[key][note.dynamics] = float(np.max(np.abs(x)))
    compared = 0
    for levels in peaks.values():
        if "pp" in levels and "ff" in levels:
            assert 20 * math.log10(levels["ff"] / levels["pp"]) > 10
            compared += 1
    assert compared >= 3


def test_takes_are_never_identical(small_render: tuple[Path, dataset.RenderSummary]) -> None:
    out, _ = small_render
    digests = Counter((out / n.path).read_bytes()[44:] for n in dataset.build_manifest(seed=7, **SMALL))
    assert max(digests.values()) == 1


def test_render_is_deterministic(small_render: tuple[Path, dataset.RenderSummary], tmp_path: Path) -> None:
    out, _ = small_render
    # Same seed, one process instead of two, into a new folder: the same bytes.
    again = tmp_path / "again"
    dataset.render_dataset(again, seed=7, workers=1, progress=False, **SMALL)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel
    # Another seed: other audio for the same notes.
    other = tmp_path / "other"
    dataset.render_dataset(other, seed=8, workers=1, progress=False, instruments=["Fl"], max_pitches=3)
    common = [p.relative_to(other) for p in other.rglob("*.wav") if (out / p.relative_to(other)).exists()]
    assert common
    for rel in common:
        assert (out / rel).read_bytes() != (other / rel).read_bytes(), rel


def test_rerun_into_the_same_folder(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    first = dataset.render_dataset(out, seed=3, workers=1, progress=False, instruments=["Ob"], max_pitches=1)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    second = dataset.render_dataset(out, seed=3, workers=1, progress=False, instruments=["Ob"], max_pitches=1)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after and first.files == second.files >= 2


def test_cli_synth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    code = cli.main(["synth", "--out", str(out), "--instruments", "Vn", "--max-pitches", "2", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("rendered ") and str(out) in printed
    result = parse_metadata(out / METADATA_FILENAME)
    assert result.errors == []
    assert {r.instrument_abbr for r in result.rows} == {"Vn"}
    assert len({r.pitch_id for r in result.rows}) == 2
    assert all((out / r.path).is_file() for r in result.rows)


@pytest.mark.parametrize("conditions", ["dry", "mixed"])
def test_spawned_workers_render_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conditions: str
) -> None:
    # With other threads about (Airflow, a server), workers are spawned instead of forked.
    import multiprocessing

    small = {"instruments": ["Ob"], "max_pitches": 1, "conditions": conditions}
    inline = tmp_path / "inline"
    dataset.render_dataset(inline, seed=5, workers=1, progress=False, **small)
    monkeypatch.setattr(dataset, "_mp_context", lambda: multiprocessing.get_context("spawn"))
    spawned = tmp_path / "spawned"
    dataset.render_dataset(spawned, seed=5, workers=2, progress=False, **small)
    files = [p.relative_to(inline) for p in inline.rglob("*") if p.is_file()]
    assert files
    for rel in files:
        assert (inline / rel).read_bytes() == (spawned / rel).read_bytes(), rel


# ------------------------------------------------------------------ sources and render conditions

# sha256 of render_audio's int16 bytes, taken before render conditions existed: the plain
# (`dry`) render must never change (the default dataset and `make demo` rely on it).
# numpy's float64 exp/sin/log kernels differ in the last bit between CPUs with AVX-512 and
# without (AVX2 only, e.g. AMD EPYC), which can move an int16 sample by one step: each note
# has one digest per kind of CPU, taken from the same code (a change to the render moves both).
# Since session 38 the player moves the filter with the modulation envelope (TimGM6mb's violin and
# accordion changed); each value below was computed with numpy's AVX-512 kernels and without them
# (NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR", which gave the earlier AVX2 values back).
# Since session 39 the modulation LFO moves pitch and level (TimGM6mb's violin wavers by 10 cents), the
# LFOs are triangles as the spec has them, and velocity no longer lowers the cutoff (as in FluidSynth and
# TinySoundFont): all three notes changed, and each now renders the same with both kinds of kernels.
DRY_BEFORE_CONDITIONS = {
    "Strings/Violin/ordinario/Vn-ord-G3-pp-4c-N.wav": {"8e72301396e5d429"},
    "Keyboards/Accordion/ordinario/Acc-ord-E1-mf-alt1-N.wav": {"c15ad3a34ef475c3"},
    "Brass/Trumpet_C/ordinario/TpC-ord-F#3-ff-N-N.wav": {"41541c351c9edce5"},
}
SMALL_SEED7_WAVS_BEFORE_CONDITIONS = {
    "9f3053e82b17d9973cd91c666ae5c8b5c52739a3c97b08a962807e2f374e4974",  # AVX-512
    "a49f9e9a1062747defba025e96abc91efb00596b31b095c7880b95be293f1dda",  # AVX2 only
}


def test_dry_is_byte_identical_to_before_conditions() -> None:
    import hashlib

    from instropitch.synth import conditions
    from instropitch.synth.sf2 import SoundFont, default_soundfont_path

    sf = SoundFont.load(default_soundfont_path())
    notes = {n.path: n for n in dataset.build_manifest(0, instruments=["Vn", "Acc", "TpC"], max_pitches=1)}
    for path, digest in DRY_BEFORE_CONDITIONS.items():
        note = notes[path]
        for condition in (None, conditions.DRY, dataset.note_condition(note, "dry", "anything")):
            assert (
                hashlib.sha256(dataset.render_audio(note, sf, condition=condition).tobytes()).hexdigest()[:16] in digest
            )
        # A note that draws `dry` among other presets is the plain render too.
        for source in map(str, range(40)):
            if dataset.note_condition(note, "dry,room,player", source).name == "dry":
                break
        else:
            pytest.fail("no source drew dry")
        audio = dataset.render_audio(note, sf, condition=dataset.note_condition(note, "dry,room,player", source))
        assert hashlib.sha256(audio.tobytes()).hexdigest()[:16] in digest


def test_default_render_is_byte_identical_to_before_conditions(
    small_render: tuple[Path, dataset.RenderSummary],
) -> None:
    import hashlib

    out, _ = small_render
    digest = hashlib.sha256()
    for path in sorted(out.rglob("*.wav")):
        digest.update(path.read_bytes())
    assert digest.hexdigest() in SMALL_SEED7_WAVS_BEFORE_CONDITIONS
    # The CSV: the 14 TinySOL columns as they were, then Source and Condition.
    result = parse_metadata(out / METADATA_FILENAME)
    assert result.extra_columns == dataset.EXTRA_COLUMNS == ("Source", "Condition")
    extra = read_extra_columns(out / METADATA_FILENAME)
    assert set(extra.values()) == {("timgm6mb", "dry")}


def read_extra_columns(csv_path: Path) -> dict[str, tuple[str, str]]:
    """Path -> (Source, Condition) of a synthetic CSV, checking it has exactly 16 columns."""
    import csv

    with open(csv_path, newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    assert tuple(lines[0][:14]) == tinysol.METADATA_COLUMNS and lines[0][14:] == ["Source", "Condition"]
    assert all(len(line) == 16 for line in lines)
    return {line[0]: (line[14], line[15]) for line in lines[1:]}


def test_resolve_sources(tmp_path: Path) -> None:
    from instropitch.synth.sf2 import default_soundfont_path

    gm = default_soundfont_path()
    assert dataset.resolve_sources(None) == {"timgm6mb": gm}
    assert dataset.resolve_sources(str(gm)) == {"timgm6mb": gm}
    assert dataset.source_name("/usr/share/sounds/sf2/FluidR3_GM.sf2") == "fluidr3_gm"
    assert dataset.source_name("My Font (v2).sf2") == "my_font__v2_"
    assert dataset.resolve_sources([f"a={gm}", f"b={gm}"]) == {"a": gm, "b": gm}
    assert dataset.resolve_sources({"x": gm}) == {"x": gm}
    with pytest.raises(ValueError, match=r"two SoundFonts named 'timgm6mb'.*NAME=PATH"):
        dataset.resolve_sources([str(gm), gm])
    with pytest.raises(FileNotFoundError, match="nope.sf2"):
        dataset.resolve_sources([str(gm), f"b={tmp_path / 'nope.sf2'}"])
    with pytest.raises(ValueError, match="bad source name"):
        dataset.resolve_sources({"a/b": gm})


def test_note_conditions_are_seeded_per_source() -> None:
    notes = dataset.build_manifest(0, instruments=["Fl"], max_pitches=5)
    names = "room,hall,mic,distant,player"
    a = [dataset.note_condition(n, names, "a") for n in notes]
    assert a == [dataset.note_condition(n, names, "a") for n in notes]
    b = [dataset.note_condition(n, names, "b") for n in notes]
    assert [c.tag for c in a] != [c.tag for c in b]
    assert {c.name for c in a + b} == set(names.split(","))


def test_two_sources_with_conditions(tmp_path: Path) -> None:
    import shutil

    from instropitch.synth.sf2 import default_soundfont_path

    copy = tmp_path / "Second_Font.sf2"
    shutil.copyfile(default_soundfont_path(), copy)
    fonts = [str(default_soundfont_path()), str(copy)]
    small = {"instruments": ["Ob", "Vc"], "max_pitches": 2}
    out = tmp_path / "two"
    summary = dataset.render_dataset(
        out, soundfont=fonts, seed=4, workers=2, progress=False, conditions="room,mic", **small
    )
    planned = dataset.build_manifest(4, **small)
    assert sorted(p.name for p in out.iterdir()) == ["second_font", "timgm6mb"]
    assert [s.source for s in summary.sources] == ["timgm6mb", "second_font"]
    assert summary.files == 2 * len(planned) and summary.out_dir == out
    lines = str(summary).splitlines()
    assert len(lines) == 3 and lines[0].startswith("timgm6mb: rendered") and lines[2].startswith("total:")
    tags = {}
    for name in ("timgm6mb", "second_font"):
        folder = out / name
        result = parse_metadata(folder / METADATA_FILENAME)
        assert result.errors == [] and result.extra_columns == ("Source", "Condition")
        assert sorted(r.path for r in result.rows) == sorted(n.path for n in planned)
        extra = read_extra_columns(folder / METADATA_FILENAME)
        assert {src for src, _ in extra.values()} == {name}
        assert {c for _, c in extra.values()} == {"room", "mic"}
        for note in planned:
            assert extra[note.path][1] == dataset.note_condition(note, "room,mic", name).tag
            samples, rate, _, _ = read_wav(folder / note.path)
            assert rate == 44100 and len(samples) == round(note.duration_s * rate)
            assert 0.01 * 32767 < np.max(np.abs(samples.astype(np.int32))) < 32767
        tags[name] = extra
    # Same font, different source names: independent conditions, so different files.
    differ = [p for p in tags["timgm6mb"] if tags["timgm6mb"][p] != tags["second_font"][p]]
    assert differ
    for path in differ:
        assert (out / "timgm6mb" / path).read_bytes() != (out / "second_font" / path).read_bytes()

    # One process, one source at a time: the same bytes (a source does not depend on the others).
    alone = tmp_path / "alone"
    single = dataset.render_dataset(
        alone, soundfont=f"second_font={copy}", seed=4, workers=1, progress=False, conditions="room,mic", **small
    )
    assert single.source == "second_font" and not single.sources and "\n" not in str(single)
    files = sorted(p.relative_to(alone) for p in alone.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out / "second_font") for p in (out / "second_font").rglob("*") if p.is_file())
    for rel in files:
        assert (alone / rel).read_bytes() == (out / "second_font" / rel).read_bytes(), rel


def test_unknown_condition_fails_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=r"unknown render condition\(s\) 'cave'; known: dry, room, hall, mic"):
        dataset.render_dataset(out, conditions="room,cave", progress=False)
    assert cli.main(["synth", "--out", str(out), "--conditions", "dry,cave", "--quiet"]) == 1
    assert "unknown render condition(s) 'cave'" in capsys.readouterr().err
    assert not out.exists()


def test_cli_synth_sources_and_conditions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from instropitch.synth.sf2 import default_soundfont_path

    gm = default_soundfont_path()
    out = tmp_path / "cli-sources"
    code = cli.main(
        ["synth", "--soundfont", f"a={gm}", "--soundfont", f"b={gm}", "--conditions", "room,mic"]
        + ["--scale", "0.05", "--instruments", "Fl,Hn", "--workers", "2", "--out", str(out), "--quiet"]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["a", "b", "total"]
    planned = dataset.build_manifest(0, scale=0.05, instruments=["Fl", "Hn"])
    for name in ("a", "b"):
        extra = read_extra_columns(out / name / METADATA_FILENAME)
        assert sorted(extra) == sorted(n.path for n in planned)
        assert {s for s, _ in extra.values()} == {name} and {c for _, c in extra.values()} <= {"room", "mic"}
        assert all((out / name / path).is_file() for path in extra)
