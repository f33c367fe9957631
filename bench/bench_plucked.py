"""Benchmark: a plucked or struck note (guitar, piano, harp) must not get a sure instrument answer (issue 15).

The models know TinySOL's 14 instruments, all of which hold their notes. Real recordings of
instruments outside them, from npm's `tonejs-instrument-*-mp3` packages (the tonejs-instruments
library, samples CC-BY 3.0: players, rooms and microphones this project never chose), read
"Brass, sure" as the family answer on 57 of 216 guitar, bass, piano, harp and xylophone notes
before the predictor looked at how the note's level moves (`audio.decay`). This fetches those
packages (pinned, md5-checked), decodes them, and predicts every note with the check and without it;
SoX's plucked string (Karplus-Strong, code this project did not write) over E2-C6 too. Notes on
which the check must not fire: `--notes` TinySOL-layout folders of held notes (e.g.
`bench/recordings_set.py`'s real recordings, the demo's renders), and some of them cut after 0.3-0.8 s
and played through SoX's reverb (a short note let go in a room falls as far as a guitar, but at once);
the organ and the harmonium of the packages hold their notes as well.

    .venv/bin/python bench/bench_plucked.py --from-export DIR --notes /tmp/tonejs --json /tmp/plucked.json
    MLFLOW_TRACKING_URI=sqlite:///$PWD/.instropitch/mlflow.db .venv/bin/python bench/bench_plucked.py
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_not_one_note  # noqa: E402  (bench modules beside this one)
import bench_tones  # noqa: E402

from instropitch.data.download import fetch, read_tonejs_package, tonejs_url  # noqa: E402

OUTSIDE_PACKAGES = {
    "bass-electric": ("1.1.2", "dbe78f4405293dedd245576aaec548cb", 2_816_101),
    "guitar-acoustic": ("1.1.2", "67f75bee3804ee562ce7ccb90b1fabfd", 1_377_015),
    "guitar-electric": ("1.1.1", "406c1634c4b632f9d6fe30c7bc92ba9d", 524_417),
    "guitar-nylon": ("1.1.1", "afcfa01e392e5f3a2e5c96392750bc7d", 557_824),
    "harp": ("1.1.1", "d014feab284b4ac2f802cddd026073c6", 3_446_629),
    "piano": ("1.1.2", "96ca3714044c5501b40b3effaa11fc24", 3_142_816),
    "xylophone": ("1.1.2", "bcd8b713e1d0098bfdf6d90529d83e08", 91_839),
    "organ": ("1.1.1", "d157eb46096c98ffe6df39ed4102bbda", 5_116_658),
    "harmonium": ("1.1.1", "d2a668840156b121b8c6c41a1bab7c2a", 6_941_357),
}
"""npm's `tonejs-instrument-NAME-mp3` of instruments outside TinySOL: NAME -> (version, tarball md5, size); each
tarball's sha512 matched the registry's published integrity (2026-12-06). The last two hold their notes."""
HELD = ("organ", "harmonium")
SOX_PLUCKS = ("E2", "A2", "D3", "G3", "B3", "E4", "A4", "E5", "C6")
REVERBERANCE = (30, 60, 90)
"""SoX `reverb` settings (%) for held notes let go early in a room: they fall as far as a guitar, but at once."""


def let_go_in_a_room(path: str, draw: int, reverberance: int, folder: Path) -> tuple[str, Path]:
    """Held note `path` cut after 0.3-0.8 s (a 20 ms fade), 2 s of silence after it, through SoX's reverb."""
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    rng = np.random.default_rng(draw)
    cut, fade = int(rng.uniform(0.3, 0.8) * rate), int(0.02 * rate)
    note = samples.mean(axis=1)[:cut].copy()
    note[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    dry, wet = folder / f"short-{draw}.wav", folder / f"short-{draw}-reverb{reverberance}.wav"
    soundfile.write(dry, np.concatenate([note, np.zeros(2 * rate, dtype=np.float32)]), rate, subtype="PCM_16")
    subprocess.run(
        ["sox", str(dry), str(wet), "reverb", str(reverberance), "norm", "-3"], check=True, capture_output=True
    )
    return wet.name, wet


def outside_notes(name: str, cache: Path, folder: Path) -> list[tuple[str, Path]]:
    """Every recording of package `name` as a 16-bit WAV in `folder`, named by its MIDI note."""
    version, md5, size = OUTSIDE_PACKAGES[name]
    url = tonejs_url(name, version=version)
    notes, rate = read_tonejs_package(
        fetch(url, cache / f"tonejs-{name}-{version}.tgz", md5=md5, size=size, progress=False), url
    )
    made = []
    for midi, samples in sorted(notes.items()):
        out = folder / f"{name}-{midi}.wav"
        soundfile.write(out, samples * (0.5 / max(float(np.max(np.abs(samples))), 1e-9)), rate, subtype="PCM_16")
        made.append((out.name, out))
    return made


def sox_pluck(note: str, folder: Path) -> tuple[str, Path]:
    """SoX's plucked string on `note`, 2 s at 44.1 kHz, -6 dBFS."""
    out = folder / f"pluck-{note}.wav"
    command = ["sox", "-n", "-r", str(bench_not_one_note.SR), "-c", "1", "-b", "16", str(out), "synth", "2", "pluck"]
    subprocess.run([*command, note, "norm", "-6"], check=True, capture_output=True)
    return out.name, out


@contextlib.contextmanager
def check_off() -> Iterator[None]:
    """The predictor before session 54: the note's fall after its attack not looked at."""
    from instropitch.audio import decay

    original = decay.struck_fall
    decay.struck_fall = lambda fall: None
    try:
        yield
    finally:
        decay.struck_fall = original


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-export", type=Path, help="an export folder (default: the registry champions)")
    parser.add_argument("--notes", type=Path, nargs="*", default=[], help="TinySOL-layout folders of held notes")
    parser.add_argument("--cache", type=Path, default=Path(".instropitch/downloads"), help="where the tarballs go")
    parser.add_argument("--short", type=int, default=80, help="held notes cut short and played in a room, per reverb")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from instropitch.serving.predictor import Predictor

    predictor = Predictor.load(from_export=args.from_export)
    started = time.perf_counter()
    args.cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-plucked-") as tmp:
        sets = {f"outside: {name}": outside_notes(name, args.cache, Path(tmp)) for name in OUTSIDE_PACKAGES}
        if shutil.which("sox"):
            sets["SoX pluck"] = [sox_pluck(note, Path(tmp)) for note in SOX_PLUCKS]
        held = {folder: bench_not_one_note.labelled_notes(folder) for folder in args.notes}
        for folder, paths in held.items():
            sets[f"held: {folder}"] = [(path, path) for path in paths]
        pool = sorted(path for paths in held.values() for path in paths)
        if pool and shutil.which("sox"):
            picked = np.random.default_rng(0).choice(len(pool), size=min(args.short, len(pool)), replace=False)
            for reverb in REVERBERANCE:
                short = [let_go_in_a_room(pool[i], int(i), reverb, Path(tmp)) for i in picked]
                sets[f"held 0.3-0.8 s, SoX reverb {reverb}"] = short
        results = bench_not_one_note.run_sets(
            predictor, sets, check_off, lambda r: f"{r['plucked']:4d} of {r['answered']:4d} warned plucked or struck"
        )
    bench_tones.write_record(args.json, predictor, started, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
