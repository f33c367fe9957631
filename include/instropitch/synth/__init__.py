"""The synthetic TinySOL: SoundFont samples played note by note under recording conditions.

Layers inside, bottom up: `soundfont` (the SF2 file reader and the sample player),
`conditions` (room, microphone, distance and player variations), `dataset` (the TinySOL
manifest and the render of a whole source). This package re-exports what callers use.

May import: the vocabulary (`instropitch.tinysol`) and `instropitch.audio`.
"""

from instropitch.synth.dataset import (
    EXTRA_COLUMNS,
    SAMPLE_RATE,
    PlannedNote,
    RenderSummary,
    build_manifest,
    note_condition,
    render_audio,
    render_dataset,
    resolve_sources,
    source_name,
)

__all__ = [
    "EXTRA_COLUMNS",
    "SAMPLE_RATE",
    "PlannedNote",
    "RenderSummary",
    "build_manifest",
    "note_condition",
    "render_audio",
    "render_dataset",
    "resolve_sources",
    "source_name",
]
