"""Benchmark: does training on recordings help on recordings of other instruments from other libraries? (issue 15)

The registries hold one library of real recordings (npm's tonejs-instruments, `bench/recordings_set.py`), one
library per instrument: VSCO 2 for nine, Freesound's cello, Karoryfer's saxophone. On a snapshot that holds
the recordings' SF2 renders (`tonejs`, `tonejs-tsf`) and the raw recordings (`rec_tonejs`), as the `--far`
bench's snapshot does, this compares two instrument fits per seed on the cello and saxophone recordings:

* A: the fit blind to all of the recordings (five fonts), whose answers `bench_heldout_seeds.py --far ...
  --far rec_tonejs=tonejs` kept in its `--work` folder;
* B: a fit on the five fonts plus the renders of the nine VSCO 2 instruments (the cello and saxophone rows
  of `tonejs`/`tonejs-tsf` held out, every `fs_*` outside render never trained on).

    .venv/bin/python bench/bench_cross_recordings.py --snapshot SNAPSHOT.npz --kept /tmp/s24/far6 --seeds 42,1,2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_heldout_seeds import load_recipe  # noqa: E402  (a bench module beside this one)

OTHER_LIBRARIES = ("Vc", "ASax")
"""Freesound's cello and Karoryfer's saxophone: the instruments not recorded by VSCO 2."""
RENDERS = ("tonejs", "tonejs-tsf")
RECORDINGS = "rec_tonejs"
KEPT_GROUP = "tonejs+tonejs-tsf+fs_tonejs+rec_tonejs"
"""The `--far` bench's answers of the fit blind to all of the recordings (one `.npz` per seed)."""


def counts(pred: np.ndarray, true: np.ndarray, names: np.ndarray) -> str:
    """`right/notes` per instrument of `OTHER_LIBRARIES`, and the accuracy over both."""
    cells = [
        f"{(pred[names[true] == i] == true[names[true] == i]).sum()}/{(names[true] == i).sum()}"
        for i in OTHER_LIBRARIES
    ]
    return f"{' '.join(cells)} -> {100 * float((pred == true).mean()):.1f} %"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", type=Path, required=True)
    parser.add_argument("--kept", type=Path, required=True, help="the --work folder of the --far bench")
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--spec", type=Path, default=Path("models/instrument.yaml"))
    args = parser.parse_args()

    from instropitch.ml.fitting import model_rows, synthetic_tone_rows
    from instropitch.ml.heldout import GROUP_SEPARATOR, fit_without_source
    from instropitch.ml.snapshot import Snapshot

    snapshot = Snapshot.load(args.snapshot)
    for seed in (int(s) for s in args.seeds.split(",")):
        spec = load_recipe(args.spec, [], seed)
        rows = model_rows(spec, snapshot)
        names = np.array(rows.class_names)
        sources = rows.sources.astype(object).copy()
        other = np.isin(names[rows.y], OTHER_LIBRARIES)
        sources[np.isin(sources, RENDERS) & other] = "held"
        sources = sources.astype(str)
        target = (sources == RECORDINGS) & other
        with np.load(args.kept / f"seed{seed}" / f"{KEPT_GROUP}.npz") as kept:
            pick = target[kept["rows"]]
            a = counts(kept["proba"][pick].argmax(1), kept["labels"][pick], names)
        started = time.perf_counter()
        answers = fit_without_source(
            spec,
            rows.x,
            rows.y,
            sources,
            rows.train,
            len(names),
            GROUP_SEPARATOR.join(["held", RECORDINGS]),
            epochs=spec.training.epochs,
            extra=synthetic_tone_rows(spec, snapshot.feature_preset),
            never_train=sorted({s for s in sources if s.startswith("fs_")}),
            band_hz=rows.band_hz,
            instruments=rows.instruments,
        )
        pick = target[answers.rows]
        b = counts(answers.proba[pick].argmax(1), rows.y[answers.rows][pick], names)
        took = time.perf_counter() - started
        print(
            f"seed {seed}: A (five fonts) {a}; B (+ VSCO 2 recordings) {b}; fit {took:.0f} s, load {os.getloadavg()[0]:.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
