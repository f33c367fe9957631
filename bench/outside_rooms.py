"""A TinySOL-layout set played into rooms simulated by code this project did not write (issue 15).

The training data's rooms and halls come from the project's own reverb (`synth.conditions`):
an evaluation in those rooms shares their code with training. This copies a set (FluidSynth
renders, the real recordings of `recordings_set.py`, ...) into rooms that pyroomacoustics
simulates (Scheibler et al. 2018, MIT licence; its hybrid model: image sources for the early
reflections, ray tracing for the tail): shoebox rooms of random size, a Sabine absorption that
gives a random RT60, the source and the microphone at random places in them, air absorption on. Each note is convolved with one of
`--rooms` room responses (drawn once, seeded), its peak set to -6 dBFS as the renders' are, and
each note's room is written beside the set (`rooms.csv`).

pyroomacoustics is not a dependency of the project; install it where the bench runs:

    .venv/bin/python -m pip install --target /tmp/pra pyroomacoustics
    PYTHONPATH=/tmp/pra .venv/bin/python bench/outside_rooms.py --data /tmp/fs_merlin --out /tmp/rooms_merlin
    .venv/bin/python bench/bench_calibration.py --data merlin=/tmp/fs_merlin --data rooms=/tmp/rooms_merlin

Results: bench/RESULTS.md, "Rooms simulated by code this project did not write".
"""

from __future__ import annotations

import argparse
import csv
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile
from scipy import signal

from instropitch import tinysol
from instropitch.synth.conditions import rt60_estimate

SAMPLE_RATE = 44100
PEAK = 0.5
"""The renders' peak (-6 dBFS, `external_render.write_clip`)."""
ISM_ORDER = 3
"""Image-source reflections of the hybrid model (pyroomacoustics' advice); ray tracing makes the rest."""


@dataclass(frozen=True)
class Room:
    """One simulated room: its size (m), RT60 (s), and where the source and the microphone stand."""

    length_m: float
    width_m: float
    height_m: float
    rt60_s: float
    source: tuple[float, float, float]
    mic: tuple[float, float, float]

    @property
    def distance_m(self) -> float:
        return float(np.linalg.norm(np.subtract(self.source, self.mic)))


def draw_room(rng: np.random.Generator) -> Room:
    """A room from a practice room to a hall: 3-25 x 3-18 x 2.5-10 m, RT60 0.25-2 s (log-uniform),
    source and microphone at least 0.5 m from every wall and 0.5 m apart."""
    size = (float(rng.uniform(3, 25)), float(rng.uniform(3, 18)), float(rng.uniform(2.5, 10)))
    rt60 = float(np.exp(rng.uniform(np.log(0.25), np.log(2.0))))
    while True:
        source, mic = (tuple(float(rng.uniform(0.5, side - 0.5)) for side in size) for _ in range(2))
        if np.linalg.norm(np.subtract(source, mic)) >= 0.5:
            return Room(*size, rt60, source, mic)  # type: ignore[arg-type]


def impulse_response(room: Room, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """The room's response from the source to the microphone; `seed` makes the rays repeatable."""
    import pyroomacoustics as pra

    pra.random.seed(seed)  # its ray tracer draws from numpy's and C++'s generators, seeded here
    dims = [room.length_m, room.width_m, room.height_m]
    absorption, _ = pra.inverse_sabine(room.rt60_s, dims)
    shoebox = pra.ShoeBox(
        dims,
        fs=sample_rate,
        materials=pra.Material(absorption),
        max_order=ISM_ORDER,
        ray_tracing=True,
        air_absorption=True,
    )
    shoebox.set_ray_tracing(receiver_radius=0.5, n_rays=5000, energy_thres=1e-5)
    shoebox.add_source(list(room.source))
    shoebox.add_microphone(list(room.mic))
    shoebox.compute_rir()
    return np.asarray(shoebox.rir[0][0], dtype=np.float64)


def play_into(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """`x` as the microphone hears it, tail included, peak at `PEAK`."""
    y = signal.fftconvolve(x, ir)
    return y * (PEAK / max(float(np.max(np.abs(y))), 1e-12))


def copy_into_rooms(data: Path, out: Path, n_rooms: int, seed: int) -> list[tuple[str, int]]:
    """Write every note of `data` into `out`, each in one of `n_rooms` rooms; (path, room index) per note."""
    rng = np.random.default_rng(seed)
    rooms = [draw_room(rng) for _ in range(n_rooms)]
    irs: dict[tuple[int, int], np.ndarray] = {}
    rows = tinysol.parse_metadata(data / tinysol.METADATA_FILENAME).rows
    placed = []
    for row in rows:
        x, rate = soundfile.read(data / row.path, dtype="float64", always_2d=True)
        which = int(rng.integers(n_rooms))
        if (which, rate) not in irs:
            irs[which, rate] = impulse_response(rooms[which], rate, seed=seed * n_rooms + which)
        (out / row.path).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(out / row.path, play_into(x.mean(axis=1), irs[which, rate]), rate, subtype="PCM_16")
        placed.append((row.path, which, rate))
    shutil.copy(data / tinysol.METADATA_FILENAME, out / tinysol.METADATA_FILENAME)
    measured = {key: round(rt60_estimate(ir, key[1]), 2) for key, ir in irs.items()}
    with open(out / "rooms.csv", "w", newline="") as fh:  # one row per note: the room it was played into
        writer = csv.writer(fh)
        writer.writerow(["path", "room", *asdict(rooms[0]), "distance_m", "rt60_measured_s"])
        for path, which, rate in placed:
            room = rooms[which]
            writer.writerow([path, which, *asdict(room).values(), round(room.distance_m, 2), measured[which, rate]])
    return [(path, which) for path, which, _ in placed]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a TinySOL-layout folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rooms", type=int, default=40, help="rooms drawn; each note goes into one of them")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    placed = copy_into_rooms(args.data, args.out, args.rooms, args.seed)
    print(f"{len(placed)} notes of {args.data} into {args.rooms} rooms: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
