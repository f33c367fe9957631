"""Training over several sources: recording-condition augmentation, source-balanced batches,
leave-one-source-out scores, and promotion on the held-out-source accuracy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from support.mlflow_store import throwaway_store
from support.models import INSTRUMENTS, SPEC  # the same tiny, fast-learning instrument CNN

from instropitch.modelspec import Augmentation, SpecError, parse_spec
from instropitch.tinysol import family_indices

FRAMES, BANDS = 24, 32


def _tf_augment(x: np.ndarray, aug: Augmentation, seed: int = 0) -> np.ndarray:
    import tensorflow as tf

    from instropitch.ml.cnn import augment_example

    tf.random.set_seed(seed)
    return augment_example(tf.constant(x, tf.float32), aug).numpy()


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std()


def _note(frames_on: int = 8, band: int = 10) -> np.ndarray:
    """A z-scored 'dB' spectrogram: a harmonic note for `frames_on` frames, then near-silence."""
    rng = np.random.default_rng(1)
    x = np.full((FRAMES, BANDS), -80.0) + rng.normal(0, 1.0, (FRAMES, BANDS))
    for h, level in ((band, 0.0), (band + 12, -12.0), (band + 19, -20.0)):
        if h < BANDS:
            x[:frames_on, h] = level
    return _zscore(x).astype(np.float32)


def test_new_augmentation_keys_are_validated():
    base = {
        "label": "midi",
        "input": "pitch",
        "architecture": {"conv_blocks": [{"filters": 4, "kernel": 3, "pool": 1}]},
    }
    spec = parse_spec(
        {
            **base,
            "name": "p",
            "training": {
                "balance": "none",
                "leave_one_source_out": False,
                "augmentation": {
                    "eq_tilt": 2,
                    "reverb": 0.5,
                    "noise_floor": 1.5,
                    "band_limit": 0.2,
                    "freq_mask": 8,
                    "time_mask": 4,
                    "loop": 0.3,
                    "release": 0.2,
                },
            },
        }
    )
    aug = spec.training.augmentation
    assert (aug.eq_tilt, aug.reverb, aug.noise_floor, aug.band_limit) == (2.0, 0.5, 1.5, 0.2)
    assert (aug.freq_mask, aug.time_mask, aug.loop, aug.release) == (8, 4, 0.3, 0.2)
    assert aug.acoustic and aug.enabled
    assert Augmentation(loop=0.5).enabled and not Augmentation(loop=0.5).acoustic
    assert spec.training.balance == "none" and spec.training.leave_one_source_out is False
    assert parse_spec({**base, "name": "q"}).training.balance == "sources"
    with pytest.raises(SpecError, match="training.augmentation.reverb"):
        parse_spec({**base, "name": "r", "training": {"augmentation": {"reverb": 2}}})
    assert Augmentation(release=0.5).enabled and not Augmentation(release=0.5).acoustic
    with pytest.raises(SpecError, match="training.augmentation.release"):
        parse_spec({**base, "name": "e", "training": {"augmentation": {"release": -0.1}}})
    with pytest.raises(SpecError, match="training.augmentation.loop"):
        parse_spec({**base, "name": "l", "training": {"augmentation": {"loop": 1.5}}})
    with pytest.raises(SpecError, match="training.balance"):
        parse_spec({**base, "name": "s", "training": {"balance": "labels"}})


def test_reverb_rings_on_after_the_note_and_output_stays_z_scored():
    x = _note()
    y = _tf_augment(x, Augmentation(reverb=1.0))
    assert np.isfinite(y).all()
    assert abs(y.mean()) < 1e-4 and abs(y.std() - 1.0) < 1e-3
    # Just after the note stops, the note's band rings on well above a band that never sounded...
    silent_band = y[8:, 5].mean()
    assert y[8, 10] - silent_band > 1.0
    # ...and the tail decays rather than echoing back.
    tail = y[8:, 10]
    assert tail[0] >= tail.max() - 0.2 and tail[-1] <= tail[0]
    # The dry input has nothing there.
    assert x[8, 10] - x[8:, 5].mean() < 0.5


def test_eq_tilt_is_a_straight_line_across_bands_and_moves_no_partial():
    x = _note(frames_on=FRAMES)
    y = _tf_augment(x, Augmentation(eq_tilt=3.0), seed=4)
    # y = a*x + b*band + c exactly (a tilt, then the z-score again), with b != 0.
    band = np.broadcast_to(np.arange(BANDS, dtype=np.float64), x.shape)
    design = np.stack([x.ravel(), band.ravel(), np.ones(x.size)], axis=1)
    coef, *_ = np.linalg.lstsq(design, y.ravel().astype(np.float64), rcond=None)
    assert np.abs(design @ coef - y.ravel()).max() < 1e-3
    assert abs(coef[1]) > 1e-3
    # Nothing moved in frequency: the three partials are still the three loudest bands.
    assert set(np.argsort(y.mean(axis=0))[-3:]) == set(np.argsort(x.mean(axis=0))[-3:]) == {10, 22, 29}


def test_eq_curve_is_a_smooth_per_band_gain_that_no_straight_line_explains():
    x = _note(frames_on=FRAMES)
    y = _tf_augment(x, Augmentation(eq_curve=2.0), seed=2)
    # y[t, b] = a * x[t, b] + c[b]: the same gain in every frame of a band (a response, not noise).
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    a = float((xc * yc).sum() / (xc * xc).sum())
    offsets = y - a * x
    assert np.abs(offsets - offsets.mean(axis=0)).max() < 1e-3
    c = offsets.mean(axis=0)
    line = np.polyval(np.polyfit(np.arange(BANDS), c, 1), np.arange(BANDS))
    assert np.abs(c - line).max() > 0.05  # not just a tilt
    assert np.abs(np.diff(c, 2)).max() < 0.5 * np.abs(c - c.mean()).max() + 1e-6  # smooth, band to band


def test_band_limit_cuts_the_top_bands_to_the_floor():
    x = _zscore(np.random.default_rng(2).normal(0, 1, (FRAMES, BANDS))).astype(np.float32)
    cut = [
        int(np.sum(np.all(y >= y.min() - 1e-6, axis=0) & (np.ptp(y, axis=0) < 1e-5)))
        for y in (_tf_augment(x, Augmentation(band_limit=0.5), seed=s) for s in range(6))
    ]
    assert max(cut) > 0  # some draws cut whole bands flat to the floor
    assert max(cut) <= int(0.75 * BANDS) + 1


def test_lowpass_cuts_by_frequency_in_hz_not_by_band_position():
    import tensorflow as tf

    from instropitch.ml.cnn import LOWPASS_HZ, augment_example

    x = _zscore(np.random.default_rng(3).normal(0, 1, (FRAMES, BANDS))).astype(np.float32)
    # Bands in a shuffled frequency order, as no input has: the cut must follow the Hz, not the index.
    hz = np.random.default_rng(4).permutation(np.geomspace(100.0, 11000.0, BANDS)).astype(np.float32)
    cutoffs = []
    for seed in range(8):
        tf.random.set_seed(seed)
        y = augment_example(tf.constant(x), Augmentation(lowpass=1.0), tf.constant(hz)).numpy()
        flat = np.ptp(y, axis=0) < 1e-5
        assert np.allclose(y[:, flat], y.min())  # the cut bands sit at the floor
        assert abs(y.mean()) < 1e-4 and abs(y.std() - 1.0) < 1e-3  # z-scored again
        kept_hz, cut_hz = hz[~flat], hz[flat]
        assert cut_hz.size and kept_hz.size and kept_hz.max() < cut_hz.min()
        assert np.all(np.corrcoef(x[:, ~flat].ravel(), y[:, ~flat].ravel())[0, 1] > 0.99)
        cutoffs.append(cut_hz.min())
    assert LOWPASS_HZ[0] <= min(cutoffs) and len(set(cutoffs)) > 2  # random cut-offs in the range
    tf.random.set_seed(0)
    never = augment_example(tf.constant(x), Augmentation(lowpass=1e-9), tf.constant(hz)).numpy()
    assert not np.any(np.ptp(never, axis=0) < 1e-5)  # a probability: off on (nearly) every draw


def test_lowpass_training_data_carries_each_rows_band_frequencies():
    from instropitch.ml.cnn import make_dataset

    spec = parse_spec({**TINY, "training": {**TINY["training"], "augmentation": {"lowpass": 1.0}}})
    assert spec.training.augmentation.lowpass == 1.0 and spec.training.augmentation.acoustic
    with pytest.raises(SpecError, match="training.augmentation.lowpass"):
        parse_spec({**TINY, "training": {**TINY["training"], "augmentation": {"lowpass": 1.5}}})
    n = 32
    x = _zscore(np.random.default_rng(5).normal(0, 1, (n, FRAMES, BANDS))).astype(np.float32)
    y = np.arange(n) % 2
    # Row label 0: every band under any cut-off; label 1: every band above it.
    hz = np.where(y[:, None] == 0, 1000.0, 20000.0) * np.ones((1, BANDS), np.float32)
    with pytest.raises(ValueError, match="band frequencies"):
        make_dataset(x, y, spec, 2, training=True, seed=1)
    for xb, yb in make_dataset(x, y, spec, 2, training=True, seed=1, band_hz=hz):
        for example, label in zip(xb.numpy(), yb.numpy(), strict=True):
            assert (np.ptp(example) < 1e-5) == (label == 1)  # all cut, or none
    make_dataset(x, y, spec, 2, training=False)  # what is not augmented needs none


def test_noise_floor_buries_the_quiet_parts_and_keeps_the_note():
    x = _note()
    y = _tf_augment(x, Augmentation(noise_floor=20.0), seed=1)
    quiet, loud = x < 0.0, x > 1.0
    assert quiet.sum() > 100 and loud.sum() > 5
    # What was quiet is now the (random) floor, no longer the input's own faint detail...
    assert abs(np.corrcoef(x[quiet], y[quiet])[0, 1]) < 0.5
    # ...while the note still stands above it, and the output is still z-scored.
    assert y[loud].mean() > y[quiet].mean()
    assert abs(y.mean()) < 1e-4 and abs(y.std() - 1.0) < 1e-3


def test_loop_keeps_the_attack_then_repeats_a_short_run_of_the_notes_own_frames():
    from instropitch.ml.cnn import LOOP_MAX_FRAMES, LOOP_START_FRAMES

    frames = 44  # the instrument input's one second
    x = _zscore(np.random.default_rng(4).normal(0, 1, (frames, BANDS))).astype(np.float32)
    starts, lengths = set(), set()
    for seed in range(16):
        y = _tf_augment(x, Augmentation(loop=1.0), seed=seed)
        # every output frame is one of the input's own frames, in the order a loop plays them
        source = [int(np.flatnonzero(np.all(x == frame, axis=1))[0]) for frame in y]
        wrap = next(i for i, s in enumerate(source) if s != i)  # where the loop first jumps back
        start, length = source[wrap], wrap - source[wrap]
        assert LOOP_START_FRAMES[0] <= start <= LOOP_START_FRAMES[1]
        assert 1 <= length <= LOOP_MAX_FRAMES
        assert source == list(range(start)) + [start + i % length for i in range(frames - start)]
        starts.add(start)
        lengths.add(length)
    assert len(starts) > 3 and len(lengths) > 3  # random places and lengths
    kept = _tf_augment(x, Augmentation(loop=0.0001), seed=0)
    assert np.array_equal(kept, x)  # drawn with its probability, not always


def test_release_keeps_the_note_until_it_stops_then_falls_to_the_floor():
    from instropitch.ml.cnn import RELEASE_FRAMES

    frames = 44  # the instrument input's one second of a steady note: every frame alike
    x = _zscore(np.tile(np.random.default_rng(5).normal(0, 1, (1, BANDS)), (frames, 1))).astype(np.float32)
    stops, falls = set(), set()
    for seed in range(16):
        y = _tf_augment(x, Augmentation(release=1.0), seed=seed)
        assert abs(y.mean()) < 1e-4 and abs(y.std() - 1.0) < 1e-3  # z-scored again
        changed = np.flatnonzero(np.any(np.abs(y - y[0]) > 1e-4, axis=1))
        stop = int(changed[0]) - 1  # the last frame as loud as the note
        assert RELEASE_FRAMES[0] <= stop <= RELEASE_FRAMES[1]
        assert list(changed) == list(range(stop + 1, frames))  # the note itself until then...
        level = y.mean(axis=1)  # ...then quieter every frame, down to the floor, its spectrum never louder
        assert np.all(np.diff(level[stop:]) <= 1e-5) and level[-1] < level[stop] - 0.1
        assert np.all(y[stop:] <= y[stop] + 1e-5) and np.all(y >= y.min())
        stops.add(stop)
        falls.add(round(float(level[stop] - level[stop + 1]), 2))
    assert len(stops) > 3 and len(falls) > 3  # random stops and fall times
    assert np.array_equal(_tf_augment(x, Augmentation(release=0.0001), seed=0), x)  # drawn with its probability


def test_spec_augment_masks_one_run_of_bands_or_frames_and_nothing_else():
    x = _zscore(np.random.default_rng(3).normal(0, 1, (FRAMES, BANDS))).astype(np.float32)
    widths = {"freq": [], "time": []}
    for seed in range(12):
        for axis, aug in (("freq", Augmentation(freq_mask=6)), ("time", Augmentation(time_mask=5))):
            y = _tf_augment(x, aug, seed=seed)
            changed = np.any(np.abs(y - x) > 1e-6, axis=0 if axis == "freq" else 1)
            where = np.flatnonzero(changed)
            if len(where):
                assert np.all(np.diff(where) == 1)  # one contiguous run
                region = y[:, where] if axis == "freq" else y[where, :]
                assert np.allclose(region, x.mean(), atol=1e-5)  # set to the example's mean
            widths[axis].append(len(where))
            untouched = ~changed
            kept = y[:, untouched] if axis == "freq" else y[untouched, :]
            assert np.array_equal(kept, x[:, untouched] if axis == "freq" else x[untouched, :])
    assert max(widths["freq"]) <= 6 and max(widths["time"]) <= 5
    assert len(set(widths["freq"])) > 2 and len(set(widths["time"])) > 2  # random widths, some masks


def test_balanced_batches_draw_each_source_evenly():
    from instropitch.ml.cnn import make_dataset

    spec = parse_spec(
        {
            "name": "b",
            "label": "instrument",
            "input": "instrument",
            "architecture": {"conv_blocks": [{"filters": 4, "kernel": 3, "pool": 1}]},
            "training": {"batch_size": 50},
        }
    )
    n = 1000
    x = np.zeros((n, 4, 4), np.float32)
    y = np.r_[np.zeros(900, int), np.ones(100, int)]  # label = source here
    groups = np.where(y == 0, "big", "small")
    drawn = np.concatenate([b.numpy() for _, b in make_dataset(x, y, spec, 2, training=True, seed=1, groups=groups)])
    assert len(drawn) == n
    assert 0.4 < drawn.mean() < 0.6  # ~half from the small source
    unbalanced = parse_spec(_as_dict(spec, balance="none"))
    drawn = np.concatenate(
        [b.numpy() for _, b in make_dataset(x, y, unbalanced, 2, training=True, seed=1, groups=groups)]
    )
    assert 0.05 < drawn.mean() < 0.15


def test_class_balanced_batches_draw_each_label_evenly_and_pairs_each_source_and_label():
    from instropitch.ml.cnn import balance_strata, make_dataset

    y = np.r_[np.zeros(800, int), np.ones(200, int)]
    groups = np.r_[np.full(700, "a"), np.full(300, "b")]  # a: 700 zeros; b: 100 zeros, 200 ones
    assert balance_strata("none", y, groups) is None and balance_strata("sources", y, None) is None
    assert set(balance_strata("sources_classes", y, groups)) == {"a/0", "b/0", "b/1"}
    assert np.array_equal(balance_strata("sources_classes", y, None), balance_strata("classes", y, groups))
    x = np.zeros((len(y), 4, 4), np.float32)
    base = {"name": "c", "label": "instrument", "input": "instrument"}
    base["architecture"] = {"conv_blocks": [{"filters": 4, "kernel": 3, "pool": 1}]}
    drawn = {}
    for balance in ("classes", "sources_classes"):
        spec = parse_spec({**base, "training": {"batch_size": 50, "balance": balance}})
        batches = make_dataset(x, y, spec, 2, training=True, seed=1, groups=groups)
        drawn[balance] = np.concatenate([b.numpy() for _, b in batches])
        assert len(drawn[balance]) == len(y)
    assert 0.4 < drawn["classes"].mean() < 0.6  # half ones, though they are 20 % of the rows
    assert 0.25 < drawn["sources_classes"].mean() < 0.42  # one stratum of three


def _as_dict(spec, **training) -> dict:
    return {
        "name": spec.name,
        "label": spec.label,
        "input": spec.input,
        "architecture": {"conv_blocks": [{"filters": 4, "kernel": 3, "pool": 1}]},
        "training": {"batch_size": spec.training.batch_size, **training},
    }


# ------------------------------------------------------------------ leave one source out

SHAPE = (8, 24)
TINY = {
    **SPEC,
    "training": {"epochs": 10, "batch_size": 16, "learning_rate": 0.01, "seed": 3, "early_stopping": None},
}
"""test_registry's tiny spec (a 1-block CNN), without its augmentation."""


def two_source_data(n_per_source: int = 96):
    """Instrument = position of a bright band; source "mirror" uses the bands in reverse order.

    A model that never saw "mirror" must get it (almost) all wrong; one that saw it cannot.
    """
    rng = np.random.default_rng(0)
    xs, labels, sources = [], [], []
    for source, order in (("plain", INSTRUMENTS), ("mirror", INSTRUMENTS[::-1])):
        for i in range(n_per_source):
            inst = INSTRUMENTS[i % 4]
            x = rng.normal(0.0, 0.3, SHAPE)
            b = 2 + 5 * order.index(inst)
            x[:, b : b + 2] += 4.0
            xs.append(x)
            labels.append(inst)
            sources.append(source)
    return np.array(xs, np.float32), np.array(labels), np.array(sources)


def test_leave_one_source_out_never_sees_the_held_out_source():
    from instropitch.ml.heldout import leave_one_source_out, source_metrics
    from instropitch.ml.snapshot import class_layout

    x, labels, sources = two_source_data()
    values, _ = class_layout("instrument")
    y = np.array([values.index(v) for v in labels])
    scores = leave_one_source_out(
        parse_spec(TINY), x, y, sources, np.arange(len(y)), len(values), epochs=TINY["training"]["epochs"]
    )
    assert set(scores) == {"plain", "mirror"}
    for source in scores:
        assert scores[source]["n"] == 96
        # Mirrored bands: Vn<->Hn and Fl<->Ob swap, so a model that never saw the source is ~always wrong.
        assert scores[source]["test_accuracy"] < 0.2, scores
    metrics = source_metrics(scores, {"plain": 1.0, "mirror": 1.0})
    assert metrics["heldout_accuracy"] == pytest.approx(np.mean([s["test_accuracy"] for s in scores.values()]))
    assert metrics["source.plain.test_accuracy"] == 1.0
    assert "source.mirror.heldout_accuracy" in metrics and "source.mirror.heldout_macro_f1" in metrics
    # One source: nothing to hold out.
    one = sources == "plain"
    assert (
        leave_one_source_out(parse_spec(TINY), x[one], y[one], sources[one], np.arange(96), len(values), epochs=1) == {}
    )


def plain_copied_as(name: str):
    """`two_source_data` with every "plain" row again as source `name`; and the class index of each row."""
    from instropitch.ml.snapshot import class_layout

    x, labels, sources = two_source_data()
    plain = sources == "plain"
    x, labels = np.concatenate([x, x[plain]]), np.concatenate([labels, labels[plain]])
    sources = np.concatenate([sources, np.full(int(plain.sum()), name)])
    values, _ = class_layout("instrument")
    return x, labels, sources, np.array([values.index(v) for v in labels])


def test_a_source_never_trained_on_is_left_out_of_the_fit_and_answered_only_when_held_out():
    """A benchmark's outside render ("far", here a copy of "plain") is never fitted on: the fit without
    "mirror" then learns "plain" alone and gets "far" right; the fit without "plain" cannot learn it
    from "far" (it would, if "far" trained), so it gets both wrong."""
    from instropitch.ml.heldout import fit_without_source
    from instropitch.ml.snapshot import class_layout

    x, labels, sources, y = plain_copied_as("far")
    values, _ = class_layout("instrument")
    spec, epochs = parse_spec(TINY), TINY["training"]["epochs"]

    def accuracy(held_out: str, name: str) -> float:
        answers = fit_without_source(
            spec, x, y, sources, np.arange(len(y)), len(values), held_out, epochs=epochs, never_train=["far"]
        )
        mine = sources[answers.rows] == name
        assert set(sources[answers.rows]) == set(held_out.split("+"))  # answers on the held-out group only
        return float(np.mean(answers.proba[mine].argmax(axis=1) == y[answers.rows][mine]))

    assert accuracy("mirror+far", "far") > 0.9  # trained on "plain", of which "far" is a copy
    assert accuracy("plain", "plain") < 0.2  # trained on "mirror" only: "far" (= "plain") was left out


def test_notes_a_source_plays_from_samples_the_held_out_source_shares_are_not_trained_on():
    """The "twin" source plays every note of "plain" from the same samples; `heldout_shared` says so for the first two
    instruments. The fit blind to "plain" and "mirror" trains on "twin" alone: it hears the last two
    instruments (and names plain's right) but not the shared two, which it never learns."""
    from instropitch.ml import heldout
    from instropitch.ml.snapshot import class_layout

    x, labels, sources, y = plain_copied_as("twin")
    values, _ = class_layout("instrument")
    shared = {"sources": ["plain", "twin"], "instruments": list(INSTRUMENTS[:2])}
    spec = parse_spec({**TINY, "training": {**TINY["training"], "heldout_shared": [shared]}})
    assert (
        heldout.shared_sample_rows(spec, "plain+mirror", sources, labels).tolist()
        == ((sources == "twin") & np.isin(labels, INSTRUMENTS[:2])).tolist()
    )
    assert not heldout.shared_sample_rows(spec, "mirror", sources, labels).any()  # mirror shares nothing
    with pytest.raises(ValueError, match="'plain' under training.heldout_shared needs each row's instrument"):
        heldout.shared_sample_rows(spec, "plain", sources, None)

    answers = heldout.fit_without_source(
        spec, x, y, sources, np.arange(len(y)), len(values), "plain+mirror", epochs=10, instruments=labels
    )
    mine = sources[answers.rows] == "plain"
    right = answers.proba[mine].argmax(axis=1) == y[answers.rows][mine]
    heard = ~np.isin(labels[answers.rows][mine], INSTRUMENTS[:2])
    assert right[heard].mean() > 0.9 and right[~heard].mean() < 0.1


def test_heldout_shared_is_validated():
    for bad, reason in (
        ([{"sources": ["a"], "instruments": ["Vn"]}], "two or more"),
        ([{"sources": ["a", "b"], "instruments": []}], "non-empty"),
        ([{"sources": ["a", "b"], "instruments": ["Violin"]}], "not TinySOL instruments"),
        ([{"sources": ["a", "b"]}], "exactly the keys"),
        ({"sources": ["a", "b"], "instruments": ["Vn"]}, "must be a list"),
    ):
        with pytest.raises(SpecError, match=reason):
            parse_spec({**TINY, "training": {**TINY["training"], "heldout_shared": bad}})


def test_with_more_sources_than_heldout_groups_each_fit_holds_out_a_group_and_every_source_is_scored():
    """Four sources, `heldout_groups: 2`: two fits ("a+c", "b+d"), each blind to both of its sources."""
    from instropitch.ml import heldout
    from instropitch.ml.snapshot import class_layout

    x, labels, halves = two_source_data(48)
    sources = np.array([f"{h}{i // 4 % 2}" for i, h in enumerate(halves)])  # plain0/1, mirror0/1: all 4 labels each
    values, _ = class_layout("instrument")
    y = np.array([values.index(v) for v in labels])
    spec = parse_spec({**TINY, "training": {**TINY["training"], "heldout_groups": 2}})
    assert heldout.heldout_sources(spec, sources.tolist(), 10) == ["mirror0+plain0", "mirror1+plain1"]
    assert heldout.heldout_sources(spec, ["a", "b"], 10) == ["a", "b"]  # no more sources than groups
    assert heldout.heldout_sources(parse_spec(TINY), sources.tolist(), 10) == sorted(set(sources.tolist()))
    fits = []
    real_fit = heldout.fit_without_source

    def counted(*args, **kwargs):
        fits.append(args[6])
        return real_fit(*args, **kwargs)

    heldout.fit_without_source = counted
    try:
        by_fit = heldout.heldout_source_probabilities(spec, x, y, sources, np.arange(len(y)), len(values), epochs=2)
    finally:
        heldout.fit_without_source = real_fit
    assert fits == ["mirror0+plain0", "mirror1+plain1"] == sorted(by_fit)
    answers = heldout.per_source(by_fit, sources)
    assert sorted(answers) == ["mirror0", "mirror1", "plain0", "plain1"]
    for name, (rows, proba, foreign, _) in answers.items():  # each source's own rows, answered by the fit blind to it
        assert np.array_equal(rows, np.flatnonzero(sources == name)) and proba.shape == (24, len(values))
        assert foreign.shape == (24,) and np.all(foreign >= 0)  # to the fit that answered
    with pytest.raises(SpecError, match="heldout_groups"):
        parse_spec({**TINY, "training": {**TINY["training"], "heldout_groups": 1}})


def test_sources_held_out_together_share_one_fit_and_every_other_source_gets_its_own(caplog):
    """Related fonts (`heldout_together`) are held out by one fit; the rest one each; names the data lacks
    drop out, and the log names them (a misspelt name would hold its relatives out apart)."""
    from instropitch.ml import heldout

    together = {**TINY["training"], "heldout_together": [["mslite", "fluidr3mono", "gone"]]}
    spec = parse_spec({**TINY, "training": together})
    assert spec.training.heldout_together == (("mslite", "fluidr3mono", "gone"),)
    fonts = ["timgm6mb", "mslite", "merlin", "fluidr3mono", "merlin"]
    with caplog.at_level("INFO", logger=heldout.log.name):
        assert heldout.heldout_sources(spec, fonts, 10) == ["fluidr3mono+mslite", "merlin", "timgm6mb"]
    assert "no data from gone (sources: fluidr3mono, merlin, mslite, timgm6mb)" in caplog.text
    assert heldout.heldout_sources(spec, ["mslite", "merlin"], 10) == ["merlin", "mslite"]  # a group of one
    assert heldout.heldout_sources(spec, ["mslite", "fluidr3mono"], 10) == []  # nothing would be left to train on
    assert spec.to_params()["training.heldout_together"] == "[[mslite, fluidr3mono, gone]]"
    for bad, reason in (
        ([["solo"]], "two or more"),
        ([["a", "b"], ["b", "c"]], "in two groups"),
        ([["a+b", "c"]], "not a source name"),
        ([["_a", "c"]], "not a source name"),
        ([["a", ""]], "not a source name"),
        ("a,b", "list of lists"),
    ):
        with pytest.raises(SpecError, match=reason):
            parse_spec({**TINY, "training": {**TINY["training"], "heldout_together": bad}})
    with pytest.raises(SpecError, match="not both"):
        parse_spec({**TINY, "training": {**together, "heldout_groups": 2}})


@pytest.fixture(scope="module")
def heldout_story(tmp_path_factory):
    """Two sources in one snapshot: v1 (trained) -> champion on held-out score; v2 untrained -> refused,
    even though the held-out score, not the test split, decides."""
    import mlflow

    from instropitch.ml import registry
    from instropitch.ml.snapshot import create_snapshot
    from instropitch.ml.training import train_and_log

    x, labels, sources = two_source_data(64)
    # Make the sources learnable from each other: same band order, different noise.
    x2 = x.copy()
    x2[sources == "mirror"] = x[sources == "plain"] + np.random.default_rng(5).normal(0, 0.3, (64, *SHAPE))
    n = len(labels)
    paths = np.array([f"{a}/ordinario/note-{i % 64:04d}.wav" for i, a in enumerate(labels)])
    pitch = np.zeros((n, 4, 4), np.float32)
    snap = create_snapshot(
        paths, np.full(n, 60), labels, np.zeros(n, int), pitch, x2, seed=2, feature_digest="fd", source=sources
    )
    root = tmp_path_factory.mktemp("mlflow")
    with throwaway_store(root):
        spec = parse_spec({**TINY, "architecture": {**TINY["architecture"], "logit_adjustment": 0.5}})
        good = train_and_log(spec, snap)
        first = registry.promote("inst", good.version, snap)
        bad = train_and_log(parse_spec({**TINY, "training": {**TINY["training"], "epochs": 1}}), snap)
        second = registry.promote("inst", bad.version, snap)
        client = mlflow.MlflowClient()
        yield {
            "snap": snap,
            "runs": (good, bad),
            "decisions": (first, second),
            "metrics": client.get_run(good.run_id).data.metrics,
            "params": client.get_run(good.run_id).data.params,
            "tags": client.get_run(good.run_id).data.tags,
            "layout": registry.load_model(good.model_uri).info,
            "artifacts": {a.path for a in client.list_artifacts(good.run_id)},
            "class_prior": mlflow.artifacts.download_artifacts(run_id=good.run_id, artifact_path="class_prior.csv"),
            "champion": registry.champion_info("inst"),
        }


def test_a_quick_run_keeps_the_fits_that_leave_out_the_sources_it_names_and_refuses_a_name_none_leaves_out():
    """`heldout_sources`, the training DAG's param (the demo runs one fit of the recipe's several)."""
    from instropitch.ml.heldout import fits_leaving_out

    fits = ["fluidr3+mslite", "merlin", "timgm6mb"]
    assert fits_leaving_out(fits, []) == fits
    assert fits_leaving_out(fits, ["mslite"]) == ["fluidr3+mslite"]
    assert fits_leaving_out(fits, ["timgm6mb", "merlin"]) == ["merlin", "timgm6mb"]
    assert fits_leaving_out([], ["merlin"]) == []  # no fits to make (one source, 0 epochs): nothing to choose from
    with pytest.raises(ValueError, match=r"no held-out fit leaves out Nope \(the fits: fluidr3\+mslite, merlin, "):
        fits_leaving_out(fits, ["merlin", "Nope"])


def test_train_and_log_records_heldout_accuracy_per_source(heldout_story):
    metrics = heldout_story["metrics"]
    for source in ("plain", "mirror"):
        assert 0.0 <= metrics[f"source.{source}.heldout_accuracy"] <= 1.0
        assert 0.0 <= metrics[f"source.{source}.test_accuracy"] <= 1.0
    assert metrics["heldout_accuracy"] == pytest.approx(
        np.mean([metrics["source.plain.heldout_accuracy"], metrics["source.mirror.heldout_accuracy"]])
    )
    assert metrics["heldout_accuracy"] > 0.8  # learnable across sources in this set
    assert heldout_story["params"]["data.sources"] == "mirror,plain"


def test_confidences_are_calibrated_on_the_held_out_sources(heldout_story):
    metrics, layout = heldout_story["metrics"], heldout_story["layout"]
    calibration = layout["calibration"]  # travels with the version: the predictor applies it
    assert calibration["fitted_on"] == "heldout_sources" == heldout_story["tags"]["calibration.fitted_on"]
    assert calibration["n"] == 128  # every note of both sources, each predicted by a model that never saw it
    assert calibration["temperature"] > 0 and 0.0 <= calibration["threshold"] <= 1.0
    assert metrics["calibration.ece"] == pytest.approx(calibration["ece"])
    assert 0.0 <= metrics["calibration.heldout_ece"] <= 1.0  # temperature fitted on the other source
    assert 0.0 <= metrics["calibration.heldout_ece_chance"] <= 1.0  # what so few answers show by chance
    share, right = metrics["calibration.heldout_sure"], metrics["calibration.heldout_sure_accuracy"]
    assert 0.0 <= share <= 1.0 and 0.0 <= right <= 1.0 and (share > 0 or right == 0.0)  # sure: by the other's threshold
    family_share, family_right = (
        metrics["calibration.heldout_family_sure"],
        metrics["calibration.heldout_family_sure_accuracy"],
    )
    assert 0.0 <= family_share <= 1.0 and 0.0 <= family_right <= 1.0  # the family answer's, the same way
    assert calibration["family_threshold"] >= 0.95  # an instrument model gets a family threshold (>= the target)
    assert "reliability_diagram.png" in heldout_story["artifacts"]


def test_the_version_logs_the_class_shares_it_took_out_of_its_answers(heldout_story):
    import pandas as pd

    from instropitch.ml.class_prior import logit_adjustment

    table = pd.read_csv(heldout_story["class_prior"])
    params = heldout_story["params"]
    assert set(table["class"][table["rows"] > 0]) == set(INSTRUMENTS)  # a line per output class, these learnt
    assert table["rows"].sum() == int(params["data.n_fit"]) + int(params["data.n_val"])
    assert table["share"].sum() == pytest.approx(1.0, abs=1e-3)
    taught = np.repeat(np.arange(len(table)), table["rows"])
    np.testing.assert_allclose(table["adjustment"], logit_adjustment(taught, len(table), 0.5), atol=1e-4)
    assert params["architecture.logit_adjustment"] == "0.5"


def test_promotion_compares_heldout_source_accuracy(heldout_story):
    from instropitch.ml.registry import BASIS_HELDOUT

    first, second = heldout_story["decisions"]
    good, bad = heldout_story["runs"]
    assert first.promoted and first.basis == BASIS_HELDOUT
    assert first.new_score == pytest.approx(good.metrics["heldout_accuracy"])
    assert second.basis == BASIS_HELDOUT
    assert second.new_score == pytest.approx(bad.metrics["heldout_accuracy"])
    assert second.champion_score == pytest.approx(good.metrics["heldout_accuracy"])
    assert second.promoted is (bad.metrics["heldout_accuracy"] > good.metrics["heldout_accuracy"])
    assert "held-out-source accuracy" in second.reason
    champion = heldout_story["champion"]  # what `make demo` prints: both scores, each under its own name
    winner = good if first.promoted and not second.promoted else bad
    assert champion.version == winner.version
    assert champion.test_accuracy == pytest.approx(winner.test_accuracy, abs=1e-6)
    assert champion.heldout_accuracy == pytest.approx(winner.metrics["heldout_accuracy"], abs=1e-6)


# ------------------------------------------------ held-out fits as separate units of work


def test_heldout_sources_plan_follows_the_recipe_unless_overridden():
    from instropitch.ml.heldout import heldout_sources

    on, off = parse_spec(TINY), parse_spec({**TINY, "training": {**TINY["training"], "leave_one_source_out": False}})
    assert heldout_sources(on, ["plain", "mirror", "plain"], epochs=3) == ["mirror", "plain"]
    assert heldout_sources(on, ["plain"], epochs=3) == []  # nothing to hold out
    assert heldout_sources(on, ["plain", "mirror"], epochs=0) == []  # an untrained model says nothing
    assert heldout_sources(off, ["plain", "mirror"], epochs=3) == []
    assert heldout_sources(off, ["plain", "mirror"], epochs=3, override=True) == ["mirror", "plain"]
    assert heldout_sources(on, ["plain", "mirror"], epochs=3, override=False) == []


def test_heldout_fits_run_apart_log_what_fitting_in_process_logs(heldout_story, tmp_path):
    """The DAG's split: each source's fit alone (`ml.heldout.fit`), its answers stored in the parent
    run, gathered by `train_and_log`: the same scores and calibration as the in-process fits."""
    import mlflow

    from instropitch.ml import heldout, registry
    from instropitch.ml.fitting import model_rows
    from instropitch.ml.heldout import Answers
    from instropitch.ml.tracking import PORTABLE_PATH
    from instropitch.ml.training import train_and_log
    from instropitch.serving.portable import OnnxModel

    snap, spec = heldout_story["snap"], parse_spec(TINY)
    with throwaway_store(tmp_path) as store:
        client = mlflow.MlflowClient()
        parent = client.create_run(store.experiment_id, tags={"instropitch.kind": "pipeline"}).info.run_id
        summaries = []
        for source in ("mirror", "plain"):
            answers = heldout.fit(spec, snap, source, epochs=TINY["training"]["epochs"])
            heldout.log_answers(answers, parent)
            heldout.log_answers(answers, parent)  # a retried task writes the same file again
            summaries.append(answers.summary())
        assert [(s["source"], s["n"], s["artifact"]) for s in summaries] == [
            ("mirror", 64, "heldout/inst/mirror.npz"),
            ("plain", 64, "heldout/inst/plain.npz"),
        ]
        assert [a.path for a in client.list_artifacts(parent, "heldout/inst")] == [
            "heldout/inst/mirror.npz",
            "heldout/inst/plain.npz",
        ]
        gathered = heldout.load_answers(parent, spec, ["mirror", "plain"], snap)
        result = train_and_log(
            spec,
            snap,
            parent_run_id=parent,
            heldout={s: a.answers() for s, a in gathered.items()},
            heldout_time_s=sum(a.fit_time_s for a in gathered.values()),
        )
        run = client.get_run(result.run_id)
        onnx = mlflow.artifacts.download_artifacts(f"{result.model_uri}/{PORTABLE_PATH}", dst_path=str(tmp_path))
        layout = registry.load_model(result.model_uri).info
        children = client.search_runs([store.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
        with pytest.raises(ValueError, match="cannot hold out 'mirror\\+plain'"):  # a group of every source
            heldout.fit(spec, snap, "mirror+plain", epochs=1)
        with pytest.raises(ValueError, match="no held-out answers heldout/inst/other.npz"):
            heldout.load_answers(parent, spec, ["other"], snap)
        with pytest.raises(ValueError, match="answers snapshot"):  # never another snapshot's answers
            heldout.load_answers(parent, spec, ["plain"], dataclasses.replace(snap, digest="another"))
        plain = gathered["plain"]
        own = Answers(plain.rows, plain.proba, plain.foreignness)  # its held-out rows passed off as familiar
        heldout.log_answers(dataclasses.replace(plain, familiar=own), parent)
        with pytest.raises(ValueError, match="plain.npz: its familiar answers are not on rows of the sources"):
            heldout.load_answers(parent, spec, ["plain"], snap)
        heldout.log_answers(dataclasses.replace(plain, familiar=None), parent)  # as a file from before them
        assert heldout.load_answers(parent, spec, ["plain"], snap)["plain"].familiar is None
    assert [c.info.run_id for c in children] == [result.run_id]  # the fits add no run of their own
    # each fit also answered the test rows of the source it trained on; the temperature was fitted on them too
    rows = model_rows(spec, snap)
    for source, other in (("mirror", "plain"), ("plain", "mirror")):
        familiar = gathered[source].familiar
        assert np.array_equal(familiar.rows, np.sort(rows.test[rows.sources[rows.test] == other]))
        assert familiar.proba.shape == (len(familiar.rows), gathered[source].proba.shape[1])
        assert familiar.foreignness.shape == familiar.rows.shape
    assert run.data.metrics["calibration.familiar_n"] == sum(len(a.familiar.rows) for a in gathered.values())
    assert 0.0 <= run.data.metrics["calibration.familiar_ece"] <= 1.0
    in_process = heldout_story["metrics"]
    for summary in summaries:
        key = f"source.{summary['source']}.heldout_accuracy"
        assert summary["heldout_accuracy"] == pytest.approx(in_process[key]) == run.data.metrics[key]
    assert run.data.metrics["heldout_accuracy"] == pytest.approx(in_process["heldout_accuracy"])
    assert run.data.metrics["heldout_training_time_s"] == pytest.approx(
        sum(s["fit_time_s"] for s in summaries), abs=0.2
    )
    assert all(a.foreignness.shape == (64,) and np.all(a.foreignness >= 0) for a in gathered.values())
    assert OnnxModel(onnx).answers_foreignness  # the champion answers its own foreignness, as its calibration reads
    assert layout["calibration"]["fitted_on"] == "heldout_sources" == run.data.tags["calibration.fitted_on"]
    stored, in_memory = dict(layout["calibration"]), dict(heldout_story["layout"]["calibration"])
    assert stored.pop("families") == in_memory.pop("families") == family_indices(layout["class_names"])
    assert stored == pytest.approx(in_memory)


def test_label_pools_list_each_labels_rows():
    from instropitch.ml.cnn import label_pools

    pool, counts = label_pools(np.array([1, 0, 1, 1]), 3)
    assert counts.tolist() == [1, 3, 0]
    assert pool[0, :1].tolist() == [1] and pool[1].tolist() == [0, 2, 3]


def test_same_label_mix_blends_with_its_own_label_from_another_source_and_keeps_the_label():
    from instropitch.ml.cnn import make_dataset

    base = {"name": "m", "label": "instrument", "input": "instrument"}
    base["architecture"] = {"conv_blocks": [{"filters": 4, "kernel": 3, "pool": 1}]}
    spec = parse_spec({**base, "training": {"batch_size": 16, "augmentation": {"same_label_mix": 1.0}}})
    assert spec.training.augmentation.same_label_mix == 1.0 and spec.training.augmentation.enabled
    with pytest.raises(SpecError, match="same_label_mix"):
        parse_spec({**base, "training": {"augmentation": {"same_label_mix": 2}}})
    # Rows: (source, label) in {a, b} x {0, 1}, each pair with a random pattern of its own.
    rng = np.random.default_rng(0)
    patterns = {key: rng.normal(0, 1, (4, 8)) for key in [("a", 0), ("a", 1), ("b", 0), ("b", 1)]}
    keys = [("a", 0), ("a", 1), ("b", 0), ("b", 1)] * 8
    x = _zscore(np.stack([patterns[k] for k in keys])).astype(np.float32)
    y = np.array([k[1] for k in keys])
    groups = np.array([k[0] for k in keys])
    both = []
    for xb, yb in make_dataset(x, y, spec, 2, training=True, seed=3, groups=groups):
        for example, label in zip(xb.numpy(), yb.numpy(), strict=True):
            own = [_zscore(patterns[k][None])[0].ravel() for k in patterns if k[1] == label]
            # A blend of its label's sources only: nothing of the other label's patterns.
            weights, residual, *_ = np.linalg.lstsq(np.stack(own, axis=1), example.ravel(), rcond=None)
            assert residual.size == 0 or residual[0] < 1e-6
            both.append(bool((weights > 0.02).all()))
    # Partners come from the other source (4 draws of 2 sources: all from its own 1 in 16); a weight
    # drawn in [0.5, 1] leaves the partner under 0.02 now and then.
    assert len(both) == len(y) and np.mean(both) > 0.75
