"""Snapshots keep each row's source: (source, path) keys, digest, file format, per-source summary."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from support.models import synthetic_arrays

from instropitch.ml.snapshot import DEFAULT_SOURCE, Snapshot, create_snapshot, strata


def two_sources(n: int = 96):
    """The same notes (same paths) in two sources, the second with other spectrograms."""
    paths, midi, inst, fold, pitch, spec = synthetic_arrays(n=n)
    source = np.array(["gm"] * n + ["fluid"] * n)
    twice = [np.concatenate([a, a]) for a in (paths, midi, inst, fold)]
    return (*twice, np.concatenate([pitch, pitch + 1.0]), np.concatenate([spec, spec - 1.0]), source)


def test_rows_are_keyed_and_sorted_by_source_then_path():
    *arrays, source = two_sources()
    snap = create_snapshot(*arrays, source=source, seed=1)
    assert len(snap) == 192 and snap.sources == ["fluid", "gm"]
    keys = list(zip(snap.source.tolist(), snap.paths.tolist(), strict=True))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert snap.summary()["sources"] == {"fluid": 96, "gm": 96}
    assert snap.stratify == "source+instrument+midi"
    for name in snap.sources:  # each source keeps its share of the test side
        assert snap.is_test[snap.source == name].sum() == 24
    # the same content in another order gives the same snapshot
    order = np.random.default_rng(0).permutation(192)
    shuffled = create_snapshot(*(a[order] for a in arrays), source=source[order], seed=1)
    assert shuffled.digest == snap.digest
    np.testing.assert_array_equal(shuffled.is_test, snap.is_test)
    # the digest covers the source: renaming one changes it
    renamed = create_snapshot(*arrays, source=np.where(source == "gm", "gm2", source), seed=1)
    assert renamed.digest != snap.digest
    with pytest.raises(ValueError, match="pairs must be unique"):
        create_snapshot(*arrays, seed=1)  # without sources the paths collide


def test_without_sources_everything_is_one_default_source_and_the_split_is_unchanged():
    arrays = synthetic_arrays(n=120)
    snap = create_snapshot(*arrays, seed=42)
    assert set(snap.source.tolist()) == {DEFAULT_SOURCE} and snap.summary()["sources"] == {DEFAULT_SOURCE: 120}
    named = create_snapshot(*arrays, seed=42, source=["TinySOL"] * 120)
    np.testing.assert_array_equal(named.is_test, snap.is_test)  # one source: the split of instrument x midi
    assert named.stratify == snap.stratify == "instrument+midi"
    assert named.digest != snap.digest


def test_tiny_multi_source_sets_still_split():
    *arrays, source = two_sources(n=8)
    snap = create_snapshot(*arrays, source=source)
    assert snap.stratify in {"source+instrument+midi", "instrument+midi", "instrument", "none"}
    assert snap.n_test == 4
    keys = strata(arrays[2], arrays[1], source)
    assert all(k == "rare" or k.split("|")[0] in {"gm", "fluid"} for k in keys)


def test_save_and_load_keep_the_source_and_old_files_still_load(tmp_path):
    *arrays, source = two_sources(n=40)
    snap = create_snapshot(*arrays, source=source, seed=2)
    back = Snapshot.load(snap.save(tmp_path / "s.npz"))
    np.testing.assert_array_equal(back.source, snap.source)
    assert back.digest == snap.digest and back.summary() == snap.summary()

    # a file written before sources existed (format 1: no `source`, digest without it)
    old = create_snapshot(*synthetic_arrays(n=40), seed=2)
    from instropitch.ml import snapshot as module

    arrays_v1 = {k: v for k, v in old._arrays().items() if k != "source"}
    arrays_v1["format_version"] = np.array(1)
    columns = (old.paths, old.midi, old.instrument, old.fold, old.pitch, old.instrument_spec, old.is_test)
    arrays_v1["digest"] = np.array(module._digest(*columns))
    with open(tmp_path / "old.npz", "wb") as f:
        np.savez_compressed(f, **arrays_v1)
    loaded = Snapshot.load(tmp_path / "old.npz")
    assert Counter(loaded.source.tolist()) == {DEFAULT_SOURCE: 40}
    np.testing.assert_array_equal(loaded.is_test, old.is_test)
