"""`make demo`'s synthetic set: rendered from every default font, and a render of another font set replaced whole."""

from __future__ import annotations

from instropitch.devstack import demo
from instropitch.synth import fonts
from instropitch.tinysol import METADATA_FILENAME, parse_metadata


def test_a_render_from_other_fonts_is_replaced_whole_so_no_old_note_stays_behind(tmp_path, capsys):
    folder = tmp_path / "sources-seed0-scale0.02"
    stale = folder / "oldfont" / "Winds" / "Flute" / "ordinario"
    stale.mkdir(parents=True)
    (folder / "oldfont" / METADATA_FILENAME).write_text("Path\n")
    (stale / "Fl-ord-C4-mf-N-N.wav").write_bytes(b"RIFF")

    got = demo.ensure_dataset(folder, seed=0, scale=0.02)

    wanted = [f"{name}{suffix}" for name in fonts.default_fonts() for suffix in ("", "-tsf")]  # both players
    assert list(got) == wanted and sorted(p.name for p in folder.iterdir()) == sorted(wanted)
    out = capsys.readouterr().out
    assert f"{folder} holds another render (oldfont); replacing it" in out
    rows = sum(len(parse_metadata(got[name] / METADATA_FILENAME).rows) for name in wanted)
    assert rows == sum(1 for _ in folder.rglob("*.wav"))  # every WAV is a row of its source's CSV
    assert demo.ensure_dataset(folder, seed=0, scale=0.02) == got  # complete: reused as it is
    assert "reusing" in capsys.readouterr().out


def test_a_render_dealt_by_other_rules_is_rendered_again(tmp_path, capsys):
    folder = tmp_path / "sources-seed0-scale0.02"
    got = demo.ensure_dataset(folder, seed=0, scale=0.02)
    name = next(iter(got))
    csv = got[name] / METADATA_FILENAME
    lines = csv.read_text().splitlines(keepends=True)
    csv.write_text("".join(lines[:-1]))  # one note fewer than this font is dealt now
    capsys.readouterr()

    assert demo.ensure_dataset(folder, seed=0, scale=0.02) == got
    assert "replacing it" in capsys.readouterr().out
    assert csv.read_text().splitlines(keepends=True) == lines
