"""The TinySOL dataset model: instruments, pitch names and the metadata CSV.

TinySOL v6.0 (Ircam Studio On Line, Zenodo record 3685367, CC BY 4.0) holds 2,913
single-note WAVs of 14 orchestral instruments. Everything else in InstroPitch speaks
in the terms defined here, so the real metadata file and the synthetic one parse
through the same code path.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import numpy as np

NOTE_NAMES: tuple[str, ...] = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
"""Pitch classes as TinySOL spells them: sharps only."""

METADATA_FILENAME = "TinySOL_metadata.csv"

METADATA_COLUMNS: tuple[str, ...] = (
    "Path",
    "Fold",
    "Family",
    "Instrument (abbr.)",
    "Instrument (in full)",
    "Technique (abbr.)",
    "Technique (in full)",
    "Pitch",
    "Pitch ID",
    "Dynamics",
    "Dynamics ID",
    "Instance ID",
    "String ID (if applicable)",
    "Needed digital retuning",
)
"""The 14 columns of the real TinySOL_metadata.csv, in order."""

DYNAMICS: dict[str, int] = {"pp": 0, "p": 1, "mf": 2, "ff": 4}
"""Dynamics marking -> `Dynamics ID` as used by TinySOL (there is no `f`: ff is 4)."""

N_FOLDS = 5


@dataclass(frozen=True)
class Instrument:
    """One TinySOL instrument: how it is named, where its files live, what it can play."""

    abbr: str
    name: str
    family: str
    folder: str
    midi_low: int
    midi_high: int
    n_files: int
    bowed: bool = False

    @property
    def directory(self) -> str:
        """Folder of its notes relative to the dataset root, e.g. `Brass/Horn/ordinario`."""
        return f"{self.family}/{self.folder}/ordinario"


INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("BTb", "Bass Tuba", "Brass", "Bass_Tuba", 30, 65, 108),
    Instrument("Hn", "French Horn", "Brass", "Horn", 31, 77, 134),
    Instrument("Tbn", "Trombone", "Brass", "Trombone", 34, 72, 117),
    Instrument("TpC", "Trumpet in C", "Brass", "Trumpet_C", 54, 86, 96),
    Instrument("Acc", "Accordion", "Keyboards", "Accordion", 28, 109, 689),
    Instrument("Vc", "Cello", "Strings", "Violoncello", 36, 84, 291, bowed=True),
    Instrument("Cb", "Contrabass", "Strings", "Contrabass", 28, 72, 309, bowed=True),
    Instrument("Va", "Viola", "Strings", "Viola", 48, 96, 309, bowed=True),
    Instrument("Vn", "Violin", "Strings", "Violin", 55, 100, 284, bowed=True),
    Instrument("ASax", "Alto Saxophone", "Winds", "Sax_Alto", 49, 81, 99),
    Instrument("Bn", "Bassoon", "Winds", "Bassoon", 34, 75, 126),
    Instrument("ClBb", "Clarinet in Bb", "Winds", "Clarinet_Bb", 50, 91, 126),
    Instrument("Fl", "Flute", "Winds", "Flute", 59, 98, 118),
    Instrument("Ob", "Oboe", "Winds", "Oboe", 58, 93, 107),
)
"""The 14 instruments with their TinySOL folder, file count and MIDI range."""

INSTRUMENT_BY_ABBR: dict[str, Instrument] = {i.abbr: i for i in INSTRUMENTS}
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(i.family for i in INSTRUMENTS))
"""TinySOL's instrument families (its top folders), in the order its instruments list them."""


def family_indices(abbrs: list[str] | tuple[str, ...]) -> list[int]:
    """Each instrument's family, as an index into `FAMILIES` (e.g. a model's classes, by abbreviation)."""
    return [FAMILIES.index(INSTRUMENT_BY_ABBR[abbr].family) for abbr in abbrs]


INSTRUMENT_BY_NAME: dict[str, Instrument] = {i.name: i for i in INSTRUMENTS}
INSTRUMENT_ABBRS: tuple[str, ...] = tuple(i.abbr for i in INSTRUMENTS)

SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""A source's name (the synthetic set's `Source` column, a data folder, an S3 prefix part, a
recipe's `heldout_together` entry): a letter or digit, then letters, digits, `.`, `_`, `-`.
Match with `fullmatch`."""

_PITCH_RE = re.compile(r"^([A-G]#?)(-?\d+)$")
_RETUNE_RE = re.compile(r"^(N|[TR]\d+[ud](?:_[TR]\d+[ud])*)$")
_FILENAME_RE = re.compile(
    r"^(?P<abbr>[A-Za-z]+)-(?P<tech>ord)-(?P<pitch>[A-G]#?-?\d+)-(?P<dyn>pp|p|mf|ff)"
    r"-(?P<instance>N|alt\d+|\dc)-(?P<retune>[A-Za-z0-9_]+)\.(?P<ext>[A-Za-z0-9]{2,5})$"
)
"""TinySOL's file names; the extension is any audio format's (.wav, .flac, ...): the decoder judges the content."""


# ------------------------------------------------------------------- re-tuned neighbours

_RESAMPLE_RE = re.compile(r"R(\d+)([ud])")


def take_key(path: str, midi: int) -> tuple[str, str, str, str, int] | None:
    """(folder, instrument, dynamics, instance, MIDI): one take of one note, whatever its retuning.

    None for a file name outside TinySOL's pattern.
    """
    folder, _, name = str(path).replace("\\", "/").rpartition("/")
    match = _FILENAME_RE.match(name)
    if match is None:
        return None
    return folder, match["abbr"], match["dyn"], match["instance"], int(midi)


def resampled_from(path: str, midi: int) -> tuple[str, str, str, str, int] | None:
    """The `take_key` of the note a re-tuned neighbour was made from, or None.

    TinySOL fills missing semitones by resampling a neighbour: `R100u` in the file name
    means "the recording one semitone below, shifted 100 cents up" (`T16u` is a fine
    tuning of the note itself, not a neighbour). Such a pair is one recording twice, so
    it must never straddle a train/test split.
    """
    key = take_key(path, midi)
    if key is None:
        return None
    retune = str(path).rsplit("-", 1)[-1].removesuffix(".wav")
    cents = sum(int(c) * (1 if d == "u" else -1) for c, d in _RESAMPLE_RE.findall(retune))
    if cents == 0:
        return None
    return (*key[:4], int(midi) - round(cents / 100))


# --------------------------------------------------------------------------- pitch


A4_HZ = 440.0
"""Concert pitch: MIDI 69 (A4), equal temperament around it."""


def midi_to_hz(midi: float | np.ndarray) -> np.ndarray:
    """MIDI number (fractional or an array) -> frequency in Hz, e.g. 69 -> 440.0 (as `librosa.midi_to_hz`)."""
    return A4_HZ * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def hz_to_midi(hz: float | np.ndarray) -> np.ndarray:
    """Frequency in Hz (or an array) -> fractional MIDI number, e.g. 440.0 -> 69.0 (as `librosa.hz_to_midi`)."""
    return 69.0 + 12.0 * np.log2(np.asarray(hz, dtype=np.float64) / A4_HZ)


def midi_to_note_octave(midi: int) -> tuple[str, int]:
    """MIDI number -> (note name, octave) with C4 = 60, e.g. 69 -> ("A", 4)."""
    midi = int(midi)
    if not 0 <= midi <= 127:
        raise ValueError(f"MIDI number {midi} is outside 0..127")
    return NOTE_NAMES[midi % 12], midi // 12 - 1


def midi_to_pitch(midi: int) -> str:
    """MIDI number -> pitch name, e.g. 66 -> "F#4"."""
    note, octave = midi_to_note_octave(midi)
    return f"{note}{octave}"


def split_pitch(pitch: str) -> tuple[str, int]:
    """Pitch name -> (note, octave), e.g. "F#3" -> ("F#", 3). Sharps only."""
    match = _PITCH_RE.match(pitch.strip()) if isinstance(pitch, str) else None
    if match is None:
        raise ValueError(f"{pitch!r} is not a pitch name like 'C4' or 'F#3' (sharps only)")
    return match.group(1), int(match.group(2))


def pitch_to_midi(pitch: str) -> int:
    """Pitch name -> MIDI number, e.g. "A4" -> 69."""
    note, octave = split_pitch(pitch)
    midi = (octave + 1) * 12 + NOTE_NAMES.index(note)
    if not 0 <= midi <= 127:
        raise ValueError(f"{pitch!r} is outside the MIDI range 0..127")
    return midi


def note_octave_to_midi(note: str, octave: int) -> int:
    """(note, octave) -> MIDI number, e.g. ("C", 4) -> 60."""
    return pitch_to_midi(f"{note}{int(octave)}")


# ----------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class MetadataRow:
    """One row of TinySOL_metadata.csv, typed. Field order is the CSV's column order."""

    path: str
    fold: int
    family: str
    instrument_abbr: str
    instrument_name: str
    technique_abbr: str
    technique_name: str
    pitch: str
    pitch_id: int
    dynamics: str
    dynamics_id: int
    instance_id: int
    string_id: int | None
    needed_retuning: bool

    @property
    def instrument(self) -> Instrument:
        return INSTRUMENT_BY_ABBR[self.instrument_abbr]

    @property
    def note(self) -> str:
        return split_pitch(self.pitch)[0]

    @property
    def octave(self) -> int:
        return split_pitch(self.pitch)[1]

    def as_csv_values(self) -> list[str]:
        """The row as the 14 strings TinySOL writes (string ID as `1.0`, booleans upper case)."""
        values = []
        for value in astuple(self):
            if value is None:
                values.append("")
            elif isinstance(value, bool):
                values.append("TRUE" if value else "FALSE")
            else:
                values.append(str(value))
        if self.string_id is not None:
            values[12] = f"{float(self.string_id):.1f}"
        return values


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(MetadataRow))
COLUMN_TO_FIELD: dict[str, str] = dict(zip(METADATA_COLUMNS, FIELD_NAMES, strict=True))


@dataclass(frozen=True)
class RowError:
    """Why one metadata row was refused. `row` is the 1-based line number in the file."""

    row: int
    column: str
    reason: str
    path: str = ""

    def __str__(self) -> str:
        where = f" ({self.path})" if self.path else ""
        return f"row {self.row}{where}, column {self.column!r}: {self.reason}"


@dataclass
class ParseResult:
    """Good rows and refused rows of a metadata file; the good ones load regardless."""

    rows: list[MetadataRow]
    errors: list[RowError]
    extra_columns: tuple[str, ...] = ()


class MetadataError(ValueError):
    """The file as a whole cannot be read as TinySOL metadata (e.g. wrong header)."""


def _parse_int(value: str, column: str) -> int:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if number != int(number):
        raise ValueError(f"{value!r} is not a whole number")
    return int(number)


def _parse_bool(value: str) -> bool:
    upper = value.strip().upper()
    if upper in ("TRUE", "1"):
        return True
    if upper in ("FALSE", "0"):
        return False
    raise ValueError(f"{value!r} is not TRUE or FALSE")


def parse_row(record: dict[str, str]) -> MetadataRow:
    """Validate one CSV record (column name -> text). Raises `_ColumnError` on the first fault."""
    get = {c: (record.get(c) if record.get(c) is not None else None) for c in METADATA_COLUMNS}
    for column, value in get.items():
        if value is None:
            raise _ColumnError(column, "column is missing in this row")
        if column != "String ID (if applicable)" and value.strip() == "":
            raise _ColumnError(column, "value is empty")

    abbr = get["Instrument (abbr.)"].strip()
    instrument = INSTRUMENT_BY_ABBR.get(abbr)
    if instrument is None:
        raise _ColumnError("Instrument (abbr.)", f"unknown instrument {abbr!r}; known: {', '.join(INSTRUMENT_ABBRS)}")
    if get["Instrument (in full)"].strip() != instrument.name:
        raise _ColumnError(
            "Instrument (in full)", f"{get['Instrument (in full)']!r} does not match {abbr} ({instrument.name})"
        )
    if get["Family"].strip() != instrument.family:
        raise _ColumnError("Family", f"{get['Family']!r} does not match {abbr} ({instrument.family})")

    pitch = get["Pitch"].strip()
    try:
        midi = pitch_to_midi(pitch)
    except ValueError as exc:
        raise _ColumnError("Pitch", str(exc)) from None
    try:
        pitch_id = _parse_int(get["Pitch ID"], "Pitch ID")
    except ValueError as exc:
        raise _ColumnError("Pitch ID", str(exc)) from None
    if pitch_id != midi:
        raise _ColumnError("Pitch ID", f"{pitch_id} is not the MIDI number of {pitch} ({midi})")

    dynamics = get["Dynamics"].strip()
    if dynamics not in DYNAMICS:
        raise _ColumnError("Dynamics", f"unknown dynamics {dynamics!r}; known: {', '.join(DYNAMICS)}")
    try:
        dynamics_id = _parse_int(get["Dynamics ID"], "Dynamics ID")
    except ValueError as exc:
        raise _ColumnError("Dynamics ID", str(exc)) from None
    if dynamics_id != DYNAMICS[dynamics]:
        raise _ColumnError("Dynamics ID", f"{dynamics_id} does not match dynamics {dynamics} ({DYNAMICS[dynamics]})")

    ints: dict[str, int] = {}
    for column in ("Fold", "Instance ID"):
        try:
            ints[column] = _parse_int(get[column], column)
        except ValueError as exc:
            raise _ColumnError(column, str(exc)) from None
    if not 0 <= ints["Fold"] < N_FOLDS:
        raise _ColumnError("Fold", f"{ints['Fold']} is not a fold 0..{N_FOLDS - 1}")
    if ints["Instance ID"] < 0:
        raise _ColumnError("Instance ID", f"{ints['Instance ID']} is negative")

    string_text = get["String ID (if applicable)"].strip()
    string_id: int | None = None
    if string_text:
        try:
            string_id = _parse_int(string_text, "String ID (if applicable)")
        except ValueError as exc:
            raise _ColumnError("String ID (if applicable)", str(exc)) from None
        if not 1 <= string_id <= 4:
            raise _ColumnError("String ID (if applicable)", f"{string_id} is not a string 1..4")
    try:
        retuned = _parse_bool(get["Needed digital retuning"])
    except ValueError as exc:
        raise _ColumnError("Needed digital retuning", str(exc)) from None

    path = get["Path"].strip()
    try:
        check_path(path, instrument, pitch, dynamics, string_id)
    except ValueError as exc:
        raise _ColumnError("Path", str(exc)) from None

    return MetadataRow(
        path=path,
        fold=ints["Fold"],
        family=instrument.family,
        instrument_abbr=abbr,
        instrument_name=instrument.name,
        technique_abbr=get["Technique (abbr.)"].strip(),
        technique_name=get["Technique (in full)"].strip(),
        pitch=pitch,
        pitch_id=pitch_id,
        dynamics=dynamics,
        dynamics_id=dynamics_id,
        instance_id=ints["Instance ID"],
        string_id=string_id,
        needed_retuning=retuned,
    )


class _ColumnError(ValueError):
    def __init__(self, column: str, reason: str):
        super().__init__(reason)
        self.column = column
        self.reason = reason


def check_path(path: str, instrument: Instrument, pitch: str, dynamics: str, string_id: int | None) -> None:
    """Raise ValueError unless `path` follows TinySOL's naming for this row's values."""
    parts = path.split("/")
    if len(parts) != 4 or "/".join(parts[:3]) != instrument.directory:
        raise ValueError(f"{path!r} is not under {instrument.directory}/")
    match = _FILENAME_RE.match(parts[3])
    if match is None:
        raise ValueError(
            f"file name {parts[3]!r} does not match '{{Abbr}}-ord-{{Pitch}}-{{Dyn}}-{{Instance}}-{{Retune}}.wav' "
            "(or another audio extension: .flac, .mp3, ...)"
        )
    if match["abbr"] != instrument.abbr:
        raise ValueError(f"file name names instrument {match['abbr']!r}, the row says {instrument.abbr!r}")
    if match["pitch"] != pitch:
        raise ValueError(f"file name names pitch {match['pitch']!r}, the row says {pitch!r}")
    if match["dyn"] != dynamics:
        raise ValueError(f"file name names dynamics {match['dyn']!r}, the row says {dynamics!r}")
    if not _RETUNE_RE.match(match["retune"]):
        raise ValueError(f"retuning part {match['retune']!r} is not N or like T16u / R100u")
    instance = match["instance"]
    if instance.endswith("c") and string_id is not None and int(instance[:-1]) != string_id:
        raise ValueError(f"file name names string {instance}, the row says string {string_id}")


def parse_metadata(source: str | Path | bytes | io.TextIOBase) -> ParseResult:
    """Read TinySOL_metadata.csv text; return the good rows and one `RowError` per bad row.

    `source` is a path, the file's bytes, or an open text stream. The header must hold the
    14 TinySOL columns in order; extra columns after them are allowed (and kept out of the
    typed rows). A bad header raises `MetadataError`, since no row could be trusted then.
    """
    if isinstance(source, (str, Path)):
        text = Path(source).read_text(encoding="utf-8-sig")
        stream: io.TextIOBase = io.StringIO(text, newline="")
        name = str(source)
    elif isinstance(source, bytes):
        stream = io.StringIO(source.decode("utf-8-sig"), newline="")
        name = "metadata"
    else:
        stream = source
        name = getattr(source, "name", "metadata")
    reader = csv.reader(stream)
    try:
        header = next(reader)
    except StopIteration:
        raise MetadataError(f"{name}: the file is empty; expected the header {', '.join(METADATA_COLUMNS)}") from None
    header = [h.strip() for h in header]
    if tuple(header[: len(METADATA_COLUMNS)]) != METADATA_COLUMNS:
        missing = [c for c in METADATA_COLUMNS if c not in header]
        detail = f"missing {missing}" if missing else "columns out of order"
        raise MetadataError(f"{name}: header is not TinySOL's 14 columns ({detail}); got {header}")
    extra = tuple(header[len(METADATA_COLUMNS) :])

    rows: list[MetadataRow] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for line_no, values in enumerate(reader, start=2):
        if not values or all(v.strip() == "" for v in values):
            continue
        record = dict(zip(header, values, strict=False))
        path = record.get("Path", "")
        if len(values) < len(METADATA_COLUMNS):
            column = METADATA_COLUMNS[len(values)]
            errors.append(RowError(line_no, column, f"row has {len(values)} of {len(METADATA_COLUMNS)} columns", path))
            continue
        try:
            row = parse_row(record)
        except _ColumnError as exc:
            errors.append(RowError(line_no, exc.column, exc.reason, path))
            continue
        if row.path in seen:
            errors.append(RowError(line_no, "Path", f"duplicate of row {seen[row.path]}", row.path))
            continue
        seen[row.path] = line_no
        rows.append(row)
    return ParseResult(rows=rows, errors=errors, extra_columns=extra)


def write_metadata(
    rows: Iterable[MetadataRow],
    destination: str | Path | io.TextIOBase,
    extra: Iterable[dict[str, str]] | None = None,
    extra_columns: tuple[str, ...] = (),
) -> None:
    """Write rows as TinySOL_metadata.csv (CRLF line ends, as the real file).

    `extra_columns` are appended after the 14 TinySOL columns, with values from `extra`
    (one dict per row, in the same order).
    """
    own = isinstance(destination, (str, Path))
    stream = open(destination, "w", newline="", encoding="utf-8") if own else destination
    try:
        writer = csv.writer(stream, lineterminator="\r\n")
        writer.writerow(METADATA_COLUMNS + tuple(extra_columns))
        extras = iter(extra) if extra is not None else None
        for row in rows:
            values = row.as_csv_values()
            if extra_columns:
                more = next(extras) if extras is not None else {}
                values += [str(more.get(c, "")) for c in extra_columns]
            writer.writerow(values)
    finally:
        if own:
            stream.close()


def note_filename(instrument: Instrument, pitch: str, dynamics: str, instance: str, retune: str = "N") -> str:
    """TinySOL file name, e.g. `Vc-ord-C2-pp-4c-N.wav`; `instance` is `N`, `altK` or `Kc`."""
    return f"{instrument.abbr}-ord-{pitch}-{dynamics}-{instance}-{retune}.wav"


def make_row(
    instrument: Instrument,
    midi: int,
    dynamics: str,
    fold: int,
    instance_id: int = 0,
    string_id: int | None = None,
    retune: str = "N",
) -> MetadataRow:
    """Build a valid row (path included) the way TinySOL names its files."""
    pitch = midi_to_pitch(midi)
    if string_id is not None:
        instance = f"{string_id}c"
    elif instance_id:
        instance = f"alt{instance_id}"
    else:
        instance = "N"
    path = f"{instrument.directory}/{note_filename(instrument, pitch, dynamics, instance, retune)}"
    return MetadataRow(
        path=path,
        fold=fold,
        family=instrument.family,
        instrument_abbr=instrument.abbr,
        instrument_name=instrument.name,
        technique_abbr="ord",
        technique_name="ordinario",
        pitch=pitch,
        pitch_id=midi,
        dynamics=dynamics,
        dynamics_id=DYNAMICS[dynamics],
        instance_id=instance_id,
        string_id=string_id,
        needed_retuning=retune != "N",
    )
