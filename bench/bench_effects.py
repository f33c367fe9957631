"""Benchmark: labelled notes through a player's effects and a recording's faults, by SoX and ffmpeg (issue 15).

A user's note is rarely the plain take a sample library holds: a saxophonist or a singer swings a
vibrato as wide as a violinist's, a guitar pedal adds chorus or a phaser, a room adds echo, a cheap
interface clips, a quiet take sits near the noise floor, the mains hum under it, and a note is often
stopped short or repeated (staccato: `cut`). This passes every note of `--notes` TinySOL-layout folders
(e.g. `bench/recordings_set.py`'s real recordings, the demo's renders) through such effects, made by SoX
and ffmpeg (code this project did not write), and counts per folder and effect how often the instrument,
family and pitch answers are right, and how often a sure answer is wrong: a wider vibrato may cost the
instrument answer, but must not make a wrong answer look sure. Session 59 found ffmpeg's 22-cent vibrato
turning 38 of 122 wind notes and 39 of 69 accordion notes into strings (three of them "Strings, sure"),
and a 75-cent one 34 wrong sure families of 230; session 60 found real notes stopped after 0.3-0.8 s
read "Strings, sure" for saxophones, and hum under a quiet note named as the note, sure.

    MLFLOW_TRACKING_URI=sqlite:///$PWD/.instropitch/mlflow.db .venv/bin/python bench/bench_effects.py \\
        --notes /tmp/tonejs /tmp/renders/merlin --json /tmp/effects.json

`--copies DIR` only writes the copies, as TinySOL-layout folders `DIR/EFFECT/FOLDER` (the effect's name with
its spaces and punctuation as `_`), for a recipe's champion fits to be scored on (`bench_champion_seeds.py --data`):

    .venv/bin/python bench/bench_effects.py --notes /tmp/tonejs --effects "cut after 0.3 s" --copies /tmp/cuts
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_tones  # noqa: E402  (a bench module beside this one)

from instropitch import tinysol  # noqa: E402

HUM = "sine {f} sine mix {f2} sine mix {f3} gain -40"
"""Mains hum, -46 dBFS peak: the line frequency and its 2nd and 3rd harmonics 6 dB down (`sox -n ... synth`),
mixed under the note."""


def cut(seconds: float, *after: str) -> list[str]:
    """SoX's effects that keep the first `seconds` of sound of a note (its leading silence trimmed), fade its last 30 ms
    and leave 0.5 s of silence after it, then `after`: a staccato note, as a player stops it."""
    s = f"{seconds:g}"
    return [
        "sox",
        "silence",
        "1",
        "0.005",
        "0.5%",
        "trim",
        "0",
        s,
        "fade",
        "t",
        "0",
        s,
        "0.03",
        "pad",
        "0",
        "0.5",
        *after,
    ]


EFFECTS: dict[str, list[str]] = {
    "as is": [],
    "vibrato 15 cents": ["ffmpeg", "vibrato=f=5.5:d=0.1"],
    "vibrato 22 cents": ["ffmpeg", "vibrato=f=5.5:d=0.15"],
    "vibrato 45 cents": ["ffmpeg", "vibrato=f=5.5:d=0.3"],
    "vibrato 75 cents": ["ffmpeg", "vibrato=f=5.5:d=0.5"],
    "tremolo 5 Hz 60 %": ["sox", "tremolo", "5", "60"],
    "chorus": ["sox", "chorus", "0.7", "0.9", "55", "0.4", "0.25", "2", "-t"],
    "phaser": ["sox", "phaser", "0.89", "0.85", "1", "0.24", "2", "-t"],
    "echo 60 ms": ["sox", "echo", "0.8", "0.88", "60", "0.4"],
    "overdrive": ["sox", "overdrive", "20", "20"],
    "clipped, +12 dB": ["sox", "gain", "12"],
    "quiet, -48 dBFS peak": ["sox", "gain", "-n", "-48", "dither"],
    "hum 50 Hz": ["hum", "50"],
    "hum 60 Hz": ["hum", "60"],
    "cut after 0.3 s": cut(0.3),
    "cut after 0.6 s": cut(0.6),
    "cut after 0.9 s": cut(0.9),
    "cut after 0.6 s, reverb": cut(0.6, "reverb", "50", "gain", "-3"),
    "three 0.3-s strokes": cut(0.3, "trim", "0", "0.5", "repeat", "2"),
}
"""Effect -> the tool and its arguments (ffmpeg: an `-af` filter; "hum": the line frequency)."""


def apply(effect: list[str], src: Path, out: Path) -> None:
    """`src` through `effect` into `out` (a 16-bit WAV at the source's rate); raises when the tool fails. SoX dithers
    what it writes at 16 bits, from a fixed seed (`-R`) so that two runs read the same files."""
    tool, *args = effect
    if tool == "ffmpeg":
        cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(src), "-af", args[0], "-c:a", "pcm_s16le", str(out)]
    elif tool == "hum":
        f = float(args[0])
        seconds, rate = (_soxi(flag, src) for flag in ("-D", "-r"))
        hum = f"|sox -n -r {rate} -c 1 -p synth {seconds} " + HUM.format(f=f, f2=2 * f, f3=3 * f)
        cmd = ["sox", "-q", "-R", "-m", "-v", "1", str(src), "-v", "1", hum, "-b", "16", str(out)]
    else:
        cmd = ["sox", "-q", "-R", str(src), "-b", "16", str(out), *args]  # -R: the same dither every run
    subprocess.run(cmd, check=True, capture_output=True)


def _soxi(flag: str, path: Path) -> str:
    return subprocess.run(["soxi", flag, str(path)], capture_output=True, text=True, check=True).stdout.strip()


def tally(predictions: list, truth: list[tinysol.MetadataRow]) -> dict[str, int]:
    """Per answer (instrument, family, pitch): right, shown sure, and shown sure but wrong."""
    counts = {"n": len(predictions), "answered": 0}
    for p, row in zip(predictions, truth, strict=True):
        if not p.ok:
            continue
        counts["answered"] += 1
        for role, said, right, sure in (
            ("instrument", p.instrument_abbr, row.instrument_abbr, p.instrument_sure),
            ("family", p.instrument_family, row.family, p.instrument_family_sure),
            ("pitch", p.midi, row.pitch_id, p.pitch_sure),
        ):
            counts[f"{role}_right"] = counts.get(f"{role}_right", 0) + (said == right)
            counts[f"{role}_sure"] = counts.get(f"{role}_sure", 0) + bool(sure)
            counts[f"{role}_sure_wrong"] = counts.get(f"{role}_sure_wrong", 0) + bool(sure and said != right)
    return counts


def run(predictor: Any, folder: Path, effects: dict[str, list[str]], work: Path) -> dict[str, dict[str, int]]:
    """`tally` of every note of `folder` under each effect, printed a line each."""
    rows = [r for r in tinysol.parse_metadata(folder / tinysol.METADATA_FILENAME).rows if (folder / r.path).is_file()]
    results = {}
    for name, effect in effects.items():
        if effect:
            outs = [work / f"{i}.wav" for i in range(len(rows))]
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(apply, [effect] * len(rows), [folder / r.path for r in rows], outs))
        else:
            outs = [folder / r.path for r in rows]
        c = results[name] = tally(predictor.predict_many([(str(o), o) for o in outs], top_k=0), rows)
        print(
            f"{folder.name[:16]:16s} {name:22s} of {c['answered']:4d}: right instrument {c['instrument_right']:4d}, "
            f"family {c['family_right']:4d}, pitch {c['pitch_right']:4d}; shown sure (wrong): instrument "
            f"{c['instrument_sure']} ({c['instrument_sure_wrong']}), family {c['family_sure']} "
            f"({c['family_sure_wrong']}), pitch {c['pitch_sure']} ({c['pitch_sure_wrong']})",
            flush=True,
        )
    return results


def write_copies(folder: Path, effects: dict[str, list[str]], out: Path) -> None:
    """Every note of `folder` through each effect into `out/EFFECT/FOLDER`, with its metadata: a TinySOL-layout set."""
    rows = [r for r in tinysol.parse_metadata(folder / tinysol.METADATA_FILENAME).rows if (folder / r.path).is_file()]
    for name, effect in effects.items():
        target = out / "".join(c if c.isalnum() or c == "." else "_" for c in name) / folder.name
        for row in rows:
            (target / row.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / tinysol.METADATA_FILENAME, target / tinysol.METADATA_FILENAME)
        sources, outs = [folder / r.path for r in rows], [target / r.path for r in rows]
        with ThreadPoolExecutor(2) as pool:
            if effect:
                list(pool.map(apply, [effect] * len(rows), sources, outs))
            else:
                list(pool.map(shutil.copy, sources, outs))
        print(f"{folder.name}: {len(rows)} notes through {name!r} into {target}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-export", type=Path, help="an export folder (default: the registry champions)")
    parser.add_argument("--notes", type=Path, nargs="+", required=True, help="TinySOL-layout folders")
    parser.add_argument("--effects", nargs="*", choices=list(EFFECTS), help="default: every one")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--copies", type=Path, help="only write the copies as TinySOL-layout folders under this one")
    args = parser.parse_args()
    for tool in ("sox", "ffmpeg"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench_effects: needs {tool} (apt-get install sox ffmpeg)")
    effects = {name: EFFECTS[name] for name in args.effects or EFFECTS}
    if args.copies is not None:
        for folder in args.notes:
            write_copies(folder, effects, args.copies)
        return 0
    from instropitch.serving.predictor import Predictor

    predictor = Predictor.load(from_export=args.from_export)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-effects-") as tmp:
        results = {str(folder): run(predictor, folder, effects, Path(tmp)) for folder in args.notes}
    bench_tones.write_record(args.json, predictor, started, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
