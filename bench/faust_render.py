"""Labelled notes from physical models this project did not write: Faust's `physmodels.lib` (issue 15).

GRAME's Faust libraries hold waveguide models of a bowed string (`violinModel`), a clarinet
(`clarinetModel`) and a flute (`fluteModel`). DawDreamer (PyPI, GPLv3, a 40 MB wheel that
bundles the Faust compiler and its libraries) compiles and plays them. They make sound no
sample library holds: a bench set of unseen *synthesis*, beside FluidSynth's unseen players
(`external_render.py`). Only six instruments have a model: Vn, Va, Vc and Cb (the bowed
string, told apart only by their ranges), ClBb and Fl. The brass model (`brassModel`) did not
speak below MIDI 76 with any lip tension tried, and there is no conical bore for Ob, Bn or ASax.

The planned notes (`synth.build_manifest`) of those instruments are played with per-note bow,
reed and breath settings and vibrato, re-tuned until YIN hears the planned pitch within a
quarter semitone (the models drift by up to 15 semitones at the top of their range; a note
that does not settle is left out, as FluidSynth leaves out keys with no sample), then put
through a `synth.conditions.mixed` recording condition, after which pYIN (another estimator)
must still hear that pitch on half of the note (a breathy flute in a noisy room can lose it).

    .venv/bin/pip install dawdreamer==0.9.0       # by hand: not a project dependency (GPLv3)
    .venv/bin/python bench/faust_render.py --out /tmp/faust --seed 7 --scale 0.5
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from instropitch import synth, tinysol
from instropitch.synth import conditions
from instropitch.synth.dataset import VELOCITY

SAMPLE_RATE = 44100
RELEASE_S = 0.5
MAX_ERROR_SEMITONES = 0.25
"""How close YIN must hear the planned pitch for a note to be kept."""
MIN_VOICED = 0.5
"""Share of the held part pYIN must find voiced after the recording condition (a breathy flute
in a noisy room can lose its pitch: such a note cannot carry a pitch label)."""

CONTROLS = """import("stdfaust.lib");
PM = library("physmodels.lib")[maxLength = 12;];
f = hslider("freq", 440, 20, 5000, 0.001);
gain = hslider("gain", 0.6, 0, 1, 0.01);
gate = hslider("gate", 0, 0, 1, 1);
p1 = hslider("p1", 0.5, 0, 1, 0.001);
p2 = hslider("p2", 0.5, 0, 1, 0.001);
vibF = hslider("vibf", 5, 1, 10, 0.01);
vibG = hslider("vibg", 0.005, 0, 0.05, 0.0001);
att = hslider("att", 0.03, 0.001, 0.3, 0.001);
env = gate * gain : si.smooth(ba.tau2pole(att));
vib = 1 + os.osc(vibF) * vibG * env;
"""
"""Controls shared by every model. `maxLength` is raised from 3 m so that tubes and strings reach MIDI 28."""

MODELS = {
    # p1 bow pressure, p2 bow position (above ~0.7 the string jumps an octave in the middle register)
    "violin": "process = PM.violinModel(f * vib : pm.f2l, p1 : si.smoo, env, p2 : si.smoo) * 0.5;",
    # p1 reed stiffness, p2 bell opening
    "clarinet": "process = PM.clarinetModel(f * vib : pm.f2l, pm.blower(env, 0.05, 2000, vibF, vibG), p1, p2) * 0.5;",
    # p1 mouth position, p2 extra breath pressure
    "flute": "process = PM.fluteModel(f * vib : pm.f2l, p1 : si.smoo, pm.blower(env * (0.5 + p2), 0.05, 2000, vibF, vibG)) * 0.5;",
}
CONTROL_RANGES = {
    "violin": ((0.3, 0.7), (0.55, 0.68)),
    "clarinet": ((0.3, 0.7), (0.3, 0.7)),
    "flute": ((0.2, 0.5), (0.0, 0.05)),
}
"""(p1, p2) ranges drawn per note: where each model speaks at the planned pitch (probed over MIDI 28-99)."""
INSTRUMENT_MODEL = {"Vn": "violin", "Va": "violin", "Vc": "violin", "Cb": "violin", "ClBb": "clarinet", "Fl": "flute"}


@dataclass
class FaustModel:
    """One compiled model with its render engine (DawDreamer renders a graph, not a processor)."""

    engine: object
    processor: object

    @classmethod
    def compile(cls, model: str) -> FaustModel:
        import dawdreamer

        engine = dawdreamer.RenderEngine(SAMPLE_RATE, 256)
        processor = engine.make_faust_processor("dawdreamer")
        processor.set_dsp_string(CONTROLS + MODELS[model])
        if not processor.compile():
            raise RuntimeError(f"Faust did not compile the {model} model")
        engine.load_graph([(processor, [])])
        return cls(engine, processor)

    def play(self, hz: float, duration_s: float, controls: dict[str, float]) -> np.ndarray:
        """Mono float32: the note held for `duration_s`, then its release."""
        n = int(SAMPLE_RATE * (duration_s + RELEASE_S))
        gate = np.zeros(n, np.float32)
        gate[: int(SAMPLE_RATE * duration_s)] = 1.0
        for name, value in {"freq": hz, **controls}.items():
            self.processor.set_parameter(f"/dawdreamer/{name}", float(value))
        self.processor.set_automation("/dawdreamer/gate", gate)
        self.engine.render(duration_s + RELEASE_S)
        return np.asarray(self.engine.get_audio()[0], dtype=np.float32)


def draw_controls(model: str, rng: np.random.Generator, dynamics: str) -> dict[str, float]:
    """Per-note playing: loudness from the dynamics, vibrato, attack, and the model's two controls."""
    controls = {
        "gain": 0.35 + 0.6 * VELOCITY[dynamics] / 127,
        "vibf": rng.uniform(4.5, 6.5),
        "vibg": rng.uniform(0.0, 0.008),
        "att": float(np.exp(rng.uniform(np.log(0.01), np.log(0.15)))),
    }
    (a, b), (c, d) = CONTROL_RANGES[model]
    controls.update(p1=rng.uniform(a, b), p2=rng.uniform(c, d))
    return controls


def held_part(audio: np.ndarray, duration_s: float) -> np.ndarray:
    """The note once its attack is over (from 0.3 s, or 30 % of a short note) until its release."""
    return audio[int(SAMPLE_RATE * min(0.3, 0.3 * duration_s)) : int(SAMPLE_RATE * duration_s)]


def heard_midi(audio: np.ndarray, duration_s: float) -> float | None:
    """The median YIN pitch of the held part, as a fractional MIDI number; None for near silence."""
    import librosa

    held = held_part(audio, duration_s)
    if held.size < 4096 or not np.all(np.isfinite(held)) or np.sqrt(np.mean(held**2)) < 1e-4:
        return None
    f0 = librosa.yin(held, fmin=25, fmax=4200, sr=SAMPLE_RATE, frame_length=4096)
    return float(69 + 12 * np.log2(np.median(f0) / 440))


def still_heard(audio: np.ndarray, midi: int, duration_s: float) -> bool:
    """Whether pYIN (another estimator than the re-tuning's) still hears the planned pitch, within
    `MAX_ERROR_SEMITONES` and on `MIN_VOICED` of the held part, once the recording condition is applied."""
    import librosa

    held = held_part(audio, duration_s)
    hz = 440 * 2 ** ((midi - 69) / 12)  # an octave either side: pYIN's cost grows with its range
    f0, voiced, _ = librosa.pyin(
        held, fmin=max(hz / 2, 25.0), fmax=hz * 2, sr=SAMPLE_RATE, frame_length=4096, hop_length=2048
    )
    if voiced.mean() < MIN_VOICED:
        return False
    return abs(float(np.median(librosa.hz_to_midi(f0[voiced]))) - midi) <= MAX_ERROR_SEMITONES


def play_in_tune(
    model: FaustModel, name: str, midi: int, duration_s: float, controls: dict[str, float]
) -> np.ndarray | None:
    """Re-tune until the planned pitch is heard (at most 4 renders); None when it does not settle."""
    hz = 440 * 2 ** ((midi - 69) / 12)
    for attempt in range(4):
        audio = model.play(hz, duration_s, controls)
        heard = heard_midi(audio, duration_s)
        first_flute = name == "flute" and attempt == 0  # the flute starts up to 15 semitones off, smoothly
        if heard is None or abs(heard - midi) > (16 if first_flute else 3):
            return None
        if abs(heard - midi) < MAX_ERROR_SEMITONES:
            return audio
        hz *= 2 ** ((midi - heard) / 12)
    return None


def render_folder(out: Path, seed: int = 7, scale: float = 0.5) -> Path:
    """Render the planned notes of (seed, scale) that have a model into a TinySOL-layout folder."""
    notes = [n for n in synth.build_manifest(seed, scale=scale) if n.row.instrument_abbr in INSTRUMENT_MODEL]
    models = {name: FaustModel.compile(name) for name in sorted(set(INSTRUMENT_MODEL.values()))}
    kept, unclear = [], 0
    for note in notes:
        rng = np.random.default_rng(note.seed)
        name = INSTRUMENT_MODEL[note.row.instrument_abbr]
        duration = max(note.duration_s, 0.6)
        audio = play_in_tune(models[name], name, note.midi, duration, draw_controls(name, rng, note.dynamics))
        if audio is None:
            continue
        wet = conditions.mixed(rng).apply(audio, SAMPLE_RATE)
        if not still_heard(wet, note.midi, duration):
            unclear += 1
            continue
        (out / note.path).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(out / note.path, wet * (0.5 / float(np.max(np.abs(wet)))), SAMPLE_RATE, subtype="PCM_16")
        kept.append(note)
    counts = {abbr: sum(n.row.instrument_abbr == abbr for n in kept) for abbr in INSTRUMENT_MODEL}
    print(
        f"kept {len(kept)} of {len(notes)} notes ({unclear} lost their pitch in the recording condition,"
        f" the others did not settle in tune): {counts}"
    )
    tinysol.write_metadata(sorted((n.row for n in kept), key=lambda r: r.path), out / tinysol.METADATA_FILENAME)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=0.5)
    args = parser.parse_args()
    render_folder(args.out, args.seed, args.scale)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
