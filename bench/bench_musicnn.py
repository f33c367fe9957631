"""Benchmark: does a network pretrained on real recordings help the instrument answer on unheard sources?

musicnn (Pons & Serra, 2019; ISC licence) ships its trained checkpoints inside its PyPI wheel:
music taggers trained on MagnaTagATune (MTT, tags such as violin, cello, flute, harpsichord) and
the Million Song Dataset (MSD). Those are real recordings, which no source of this project is.
This bench reads a checkpoint straight from the wheel (nothing is installed: the wheel pins
numpy < 1.17), takes each note's embedding (time-pooled mean and max of its mid-end, its
penultimate layer, its timbral front end; 2,114 numbers), and fits a logistic regression on
them. It scores, on the same notes:

- the CNN: one training run's held-out answers (`heldout/instrument/*.npz`, each font family
  scored by the fit that never saw it) and its champion (an `instropitch export`) on far sets;
- the logistic regression, fitted on the same training rows (the snapshot's non-test rows of the
  fonts the CNN fit trained on);
- both together (the mean of the two probability vectors, and their geometric mean).

    .venv/bin/python -m pip download --no-deps musicnn==0.1.0 -d /tmp/musicnn    # 29 MB, PyPI
    .venv/bin/instropitch export --out /tmp/demo-export
    .venv/bin/python bench/bench_musicnn.py --wheel /tmp/musicnn/musicnn-0.1.0-py3-none-any.whl \\
        --run .instropitch/mlartifacts/RUN_ID/artifacts --export /tmp/demo-export \\
        --fonts .instropitch/data/sources-seed0-scale1 --data gmbank=/tmp/ext/gmbank --data opl3=/tmp/ext/opl3

`--run` is the training parent run's artifact folder (it holds `snapshot/` and `heldout/`).
Embeddings are cached under `--cache` (one `.npz` per model and set): ~0.1 s a note here.
Results: bench/RESULTS.md, "A network pretrained on real recordings".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from instropitch import tinysol

SAMPLE_RATE = 16_000
"""musicnn's input: log-mel of 16 kHz audio, 512-sample FFT, hop 256, 96 bands (its `configuration.py`)."""
FRAMES = 125
"""The first 2 s of a note (musicnn was trained on 3-s patches; its front end is convolutional, and
2 s keeps the attack and some of the sustain at two thirds of the cost)."""
EMBEDDING = (
    "model/moments/Squeeze:0",  # mean over time of the mid-end (753)
    "model/Max:0",  # max over time of the mid-end (753)
    "model/dense/Relu:0",  # penultimate (200)
    "model/Squeeze:0",  # timbral front end, two filter shapes (204 + 204), averaged over time below
    "model/Squeeze_1:0",
)


def frozen_graph(model_dir: Path):
    """musicnn's training graph (`.meta` + checkpoint) as an inference GraphDef: variables become
    constants, and the optimizer, gradients, savers and moving-average updates are dropped."""
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString((model_dir / ".meta").read_bytes())
    reader = tf.compat.v1.train.NewCheckpointReader(f"{model_dir}/")
    graph = tf.compat.v1.GraphDef()
    training_only = ("Adam", "AssignMovingAvg", "beta1_power", "beta2_power")
    for node in meta.graph_def.node:
        if node.op in ("Assign", "NoOp") or node.name.startswith(("gradients", "save")):
            continue
        if any(part in node.name for part in training_only):
            continue
        kept = graph.node.add()
        kept.CopyFrom(node)
        kept.attr.pop("_output_shapes", None)
        if kept.op == "VariableV2" and reader.has_tensor(kept.name):
            value = reader.get_tensor(kept.name)
            kept.op = "Const"
            kept.ClearField("attr")
            kept.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
            kept.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    names = {n.name for n in graph.node}
    while True:  # drop what depended on a dropped node
        orphans = {n.name for n in graph.node if any(i.lstrip("^").split(":")[0] not in names for i in n.input)}
        if not orphans:
            return graph
        names -= orphans
        nodes = [n for n in graph.node if n.name in names]
        del graph.node[:]
        graph.node.extend(nodes)


class Embedder:
    """One musicnn checkpoint in a TF1 session: a batch of log-mels -> (N, 2114) embeddings."""

    def __init__(self, model_dir: Path):
        import tensorflow as tf

        tf.compat.v1.disable_eager_execution()
        graph = tf.Graph()
        with graph.as_default():
            self.x = tf.compat.v1.placeholder(tf.float32, [None, None, 96], name="notes")  # any length
            tf.compat.v1.import_graph_def(frozen_graph(model_dir), name="", input_map={"model/Placeholder:0": self.x})
        self.training = graph.get_tensor_by_name("model/Placeholder_2:0")
        self.outputs = [graph.get_tensor_by_name(name) for name in EMBEDDING]
        self.session = tf.compat.v1.Session(graph=graph)

    def __call__(self, logmels: np.ndarray) -> np.ndarray:
        mean, peak, penultimate, timbral_a, timbral_b = self.session.run(
            self.outputs, {self.x: logmels, self.training: False}
        )
        timbral = np.concatenate([timbral_a.mean(1), timbral_b.mean(1)], axis=1)
        return np.concatenate([mean[:, :, 0], peak[:, :, 0], penultimate, timbral], axis=1)


def logmel(path: Path) -> np.ndarray:
    """musicnn's input for the first `FRAMES` of a note, silence after a shorter one."""
    import librosa

    y, sr = librosa.load(path, sr=SAMPLE_RATE, duration=FRAMES * 256 / SAMPLE_RATE + 0.1)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, hop_length=256, n_fft=512, n_mels=96).T
    mel = np.log10(10_000 * mel.astype(np.float16).astype(np.float32) + 1)  # as musicnn's extractor
    return np.pad(mel, ((0, max(0, FRAMES - len(mel))), (0, 0)))[:FRAMES]


def embed_folder(embedder: Embedder, folder: Path, cache: Path) -> dict[str, np.ndarray]:
    """{path: embedding} of a TinySOL-layout folder, cached."""
    if not cache.exists():
        rows = tinysol.parse_metadata(folder / tinysol.METADATA_FILENAME).rows
        start = time.time()
        chunks = [
            embedder(np.stack([logmel(folder / r.path) for r in rows[i : i + 16]])) for i in range(0, len(rows), 16)
        ]
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, path=np.array([r.path for r in rows]), embedding=np.concatenate(chunks))
        print(f"  embedded {folder} ({len(rows)} notes) in {time.time() - start:.0f} s", flush=True)
    data = np.load(cache)
    return dict(zip(data["path"].tolist(), data["embedding"], strict=True))


def probe(x: np.ndarray, labels: list[str], classes: list[str], c: float) -> Callable[[np.ndarray], np.ndarray]:
    """Logistic regression on standardised embeddings -> probabilities in `classes` order."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)).fit(x, labels)
    order = [list(model.classes_).index(name) for name in classes]
    return lambda z: model.predict_proba(z)[:, order]


def scores(y: np.ndarray, cnn: np.ndarray, linear: np.ndarray) -> dict[str, float]:
    """Accuracy of the CNN, the probe, their mean and their geometric mean."""
    geometric = np.exp(0.5 * (np.log(cnn + 1e-9) + np.log(linear + 1e-9)))
    return {
        name: round(float(np.mean(np.argmax(p, axis=1) == y)), 4)
        for name, p in {"cnn": cnn, "musicnn": linear, "mean": 0.5 * (cnn + linear), "geometric": geometric}.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, required=True, help="musicnn-0.1.0-py3-none-any.whl")
    parser.add_argument("--model", default="MTT_musicnn", choices=["MTT_musicnn", "MSD_musicnn"])
    parser.add_argument("--run", type=Path, required=True, help="a training parent run's artifact folder")
    parser.add_argument("--export", type=Path, required=True, help="that run's champions (instropitch export)")
    parser.add_argument("--fonts", type=Path, required=True, help="the run's sources: one TinySOL folder per source")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=DIR", help="a far set (TinySOL layout)")
    parser.add_argument("--c", type=float, default=0.1, help="inverse regularisation of the probe")
    parser.add_argument("--cache", type=Path, default=Path(".instropitch/bench/musicnn"))
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    unpacked = Path(tempfile.mkdtemp(prefix="musicnn-"))
    with zipfile.ZipFile(args.wheel) as wheel:
        wheel.extractall(unpacked, [n for n in wheel.namelist() if n.startswith(f"musicnn/{args.model}/")])
    embedder = Embedder(unpacked / "musicnn" / args.model)

    snapshot = np.load(args.run / "snapshot" / "snapshot.npz", allow_pickle=True)
    paths, sources, is_test = snapshot["paths"], snapshot["source"], snapshot["is_test"]
    instruments = snapshot["instrument"]
    classes = json.loads((args.export / "labels.json").read_text())["instrument"]["class_names"]
    fonts = {
        s: embed_folder(embedder, args.fonts / s, args.cache / args.model / f"{s}.npz") for s in np.unique(sources)
    }
    x = np.stack([fonts[s][p] for s, p in zip(sources, paths, strict=True)])

    results: dict[str, dict] = {"model": args.model, "c": args.c, "heldout": {}, "far": {}}
    for answers_file in sorted((args.run / "heldout" / "instrument").glob("*.npz")):
        answers = np.load(answers_file)
        members = answers_file.stem.split("+")
        fit = ~is_test & ~np.isin(sources, members)
        linear = probe(x[fit], instruments[fit].tolist(), classes, args.c)
        for member in members:
            keep = sources[answers["rows"]] == member
            rows = answers["rows"][keep]
            results["heldout"][member] = scores(answers["labels"][keep], answers["proba"][keep], linear(x[rows]))
            print(f"held out {member}: {results['heldout'][member]}", flush=True)
    by_method = {k: [r[k] for r in results["heldout"].values()] for k in ("cnn", "musicnn", "mean", "geometric")}
    results["heldout_mean"] = {k: round(float(np.mean(v)), 4) for k, v in by_method.items()}
    results["heldout_worst"] = {k: round(float(np.min(v)), 4) for k, v in by_method.items()}
    print(f"held-out mean {results['heldout_mean']}, worst {results['heldout_worst']}", flush=True)

    from instropitch.serving.predictor import Predictor

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_parity import features_of

    predictor = Predictor.load(from_export=args.export)
    linear = probe(x[~is_test], instruments[~is_test].tolist(), classes, args.c)
    for name, folder in (spec.split("=", 1) for spec in args.data):
        folder = Path(folder)
        rows = tinysol.parse_metadata(folder / tinysol.METADATA_FILENAME).rows
        embedded = embed_folder(embedder, folder, args.cache / args.model / f"far-{name}.npz")
        stacked = features_of([folder / r.path for r in rows], predictor.features)
        cnn = predictor.instrument_model.proba(predictor.model_inputs(stacked)["instrument"])
        y = np.array([classes.index(r.instrument_abbr) for r in rows])
        results["far"][name] = scores(y, cnn, linear(np.stack([embedded[r.path] for r in rows])))
        print(f"far set {name} ({len(rows)} notes): {results['far'][name]}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
