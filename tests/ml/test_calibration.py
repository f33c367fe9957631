"""Calibrated confidences: temperature scaling, the expected calibration error, the "not sure" threshold."""

from __future__ import annotations

import numpy as np
import pytest

from instropitch.ml.calibration import (
    CANDIDATE_LEVEL,
    HELDOUT_SOURCES,
    MIN_FOREIGNNESS,
    TARGET_ACCURACY,
    Calibration,
    Familiar,
    apply_temperature,
    calibrate,
    candidate_floor,
    candidate_mask,
    choose_threshold,
    cross_fitted,
    expected_calibration_error,
    family_proba,
    fit_temperature,
    fit_top_answer,
    map_top_answer,
    reliability,
    sure_floor,
    wilson_lower_bound,
)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def drawn_from(proba: np.ndarray, seed: int) -> np.ndarray:
    """Labels drawn from `proba`: a model whose probabilities are exactly right."""
    rng = np.random.default_rng(seed)
    cumulative = proba.cumsum(axis=1)
    return (rng.random((len(proba), 1)) > cumulative).sum(axis=1)


def overconfident(
    n: int = 4000, true_temperature: float = 3.0, seed: int = 0, spread: float = 4.0
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities 3x too sharp: the labels follow softmax(logits / 3), the model says softmax(logits)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, spread, size=(n, 6))
    return softmax(logits), drawn_from(softmax(logits / true_temperature), seed + 1)


def test_temperature_keeps_the_answer_and_sums_to_one():
    proba = softmax(np.random.default_rng(1).normal(size=(50, 5)))
    for t in (0.5, 1.0, 2.0):
        scaled = apply_temperature(proba, t)
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0)
        assert (scaled.argmax(axis=1) == proba.argmax(axis=1)).all()
    np.testing.assert_allclose(apply_temperature(proba, 1.0), proba)
    assert apply_temperature(proba, 2.0).max(axis=1).mean() < proba.max(axis=1).mean()  # T > 1 softens


def test_the_fitted_temperature_is_the_one_the_labels_follow():
    proba, y = overconfident(true_temperature=3.0)
    assert fit_temperature(proba, y) == pytest.approx(3.0, rel=0.15)
    right_proba, right_y = overconfident(true_temperature=1.0, seed=5)
    assert fit_temperature(right_proba, right_y) == pytest.approx(1.0, rel=0.15)


def test_answers_that_are_all_right_never_sharpen_the_probabilities():
    """No errors to learn from: the fit would drive T to its floor and show 100 % for any answer."""
    proba, _ = overconfident(n=300, true_temperature=1.0, seed=7)
    always_right = proba.argmax(axis=1)
    assert fit_temperature(proba, always_right) == pytest.approx(1.0, abs=1e-6)
    underconfident = apply_temperature(proba, 3.0)  # too soft, and right: softening is still fitted away
    labels = drawn_from(proba, 8)
    assert fit_temperature(underconfident, labels) == pytest.approx(1 / 3, rel=0.2)


def test_chance_ece_is_what_exactly_right_confidences_show_and_shrinks_with_more_answers():
    from instropitch.ml.calibration import answer_ece, chance_ece

    rng = np.random.default_rng(1)
    few, many = rng.uniform(0.3, 1.0, 200), rng.uniform(0.3, 1.0, 20_000)
    assert chance_ece(few) == chance_ece(few)  # the same draws each time
    assert 0.03 < chance_ece(few) < 0.1 and chance_ece(many) < 0.01
    draws = [answer_ece(few, rng.random(200) < few) for _ in range(400)]
    assert chance_ece(few) == pytest.approx(np.median(draws), abs=0.01)
    assert chance_ece(np.ones(50)) == 0.0 and chance_ece(np.zeros(0)) == 0.0


def test_ece_is_near_zero_when_right_and_large_when_overconfident():
    proba, y = overconfident()
    assert expected_calibration_error(proba, y) > 0.15
    calibrated = apply_temperature(proba, 3.0)
    assert expected_calibration_error(calibrated, y) < 0.03
    # by hand: two answers at 0.9 confidence, one right -> |0.5 - 0.9| = 0.4
    hand = np.array([[0.9, 0.1], [0.9, 0.1]])
    assert expected_calibration_error(hand, np.array([0, 1])) == pytest.approx(0.4)
    assert [n for _, _, n in reliability(hand, np.array([0, 1]))][13] == 2  # 0.9 sits in bin 14 of 15


def test_threshold_is_the_lowest_confidence_whose_answers_are_right_often_enough():
    sure_ones = np.array([0.999, 0.998, 0.997, 0.99, 0.98, 0.97, 0.96])
    correct = np.array([True, True, True, True, False, True, False])
    assert choose_threshold(sure_ones, correct, target=0.9, z=0) == pytest.approx(0.99)  # 4 of 4; 4 of 5 is 80 %
    assert choose_threshold(sure_ones, correct, target=0.8, z=0) == pytest.approx(0.97)  # 5 of 6
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5])
    # 5 of 6 right down to 0.6, but an answer shown at 0.6 is not sure of itself: the target is the floor
    assert choose_threshold(confidence, correct, target=0.8, z=0) == pytest.approx(0.8)
    assert choose_threshold(confidence, correct, target=0.55, z=0) == pytest.approx(0.55)  # 5 of 7 down to 0.5
    assert choose_threshold(confidence, np.zeros(7, bool), target=0.95) == 1.0  # nothing can be sure


def test_no_answer_is_sure_below_the_target_even_when_almost_every_answer_is_right():
    """The demo's pitch model: 327 of 328 validation notes right, the least confidence 0.12."""
    confidence = np.r_[np.full(320, 0.999), np.linspace(0.9, 0.12, 8)]
    correct = np.r_[np.ones(327, bool), False]
    assert choose_threshold(confidence, correct, z=0) == pytest.approx(0.95)
    assert sure_floor(0.12) == pytest.approx(0.95) and sure_floor(0.99) == 0.99 and sure_floor(0.0) == 0.0
    stored = Calibration.from_dict({"temperature": 1.0, "threshold": 0.1167, "fitted_on": "validation"})
    assert stored.threshold == pytest.approx(0.95)  # a version fitted before the floor reads with it
    assert Calibration.from_dict({"temperature": 1.0}).threshold == 0.0  # none stored: never "not sure"


def test_a_few_lucky_answers_do_not_make_a_sure_threshold():
    assert choose_threshold(np.array([0.99, 0.98, 0.97, 0.96]), np.ones(4, bool)) == 1.0  # 4 of 4 is not 95 %
    assert wilson_lower_bound(np.array([51, 52]), np.array([51, 52])) == pytest.approx([0.9496, 0.9505], abs=1e-4)
    confidence = np.linspace(0.99, 0.5, 200)
    correct = np.r_[np.ones(60, bool), np.zeros(140, bool)]
    assert choose_threshold(confidence, correct, target=0.8) == pytest.approx(confidence[67])  # 60 of 68: 0.825
    assert choose_threshold(confidence, correct) == pytest.approx(0.95)  # 60 in a row reach down to 0.85: floor 0.95
    assert wilson_lower_bound(np.array([0]), np.array([5]), z=0) == 0.0


def test_calibrate_fixes_an_overconfident_model_and_reports_coverage():
    proba, y = overconfident(spread=10.0)  # clear cases exist: some answers can be sure
    cal = calibrate(proba, y, "heldout_sources")
    assert cal.ece < 0.03 < 0.15 < cal.ece_raw
    assert cal.fitted_on == "heldout_sources" and cal.n == len(y)
    sure = cal.apply(proba).max(axis=1) >= cal.threshold
    assert sure.mean() == pytest.approx(cal.coverage) and cal.coverage > 0.1
    assert np.mean(cal.apply(proba).argmax(axis=1)[sure] == y[sure]) >= 0.95
    assert Calibration.from_dict(cal.to_dict()) == cal


def test_versions_without_calibration_show_their_raw_confidence():
    legacy = Calibration.from_dict(None)
    proba = softmax(np.random.default_rng(2).normal(size=(10, 4)))
    np.testing.assert_allclose(legacy.apply(proba), proba)
    assert legacy.threshold == 0.0  # never "not sure"


def test_cross_fitted_ece_scores_each_source_with_a_temperature_fitted_on_the_others():
    proba_a, y_a = overconfident(seed=10, true_temperature=3.0)
    proba_b, y_b = overconfident(seed=20, true_temperature=3.0)
    proba, y = np.concatenate([proba_a, proba_b]), np.concatenate([y_a, y_b])
    groups = np.array(["a"] * len(y_a) + ["b"] * len(y_b))
    assert cross_fitted(proba, y, groups).ece() < 0.04  # same miscalibration everywhere: transfers
    proba_c, y_c = overconfident(seed=30, true_temperature=1.0)  # a source that is not overconfident
    mixed = cross_fitted(
        np.concatenate([proba_a, proba_c]), np.concatenate([y_a, y_c]), np.array(["a"] * len(y_a) + ["c"] * len(y_c))
    ).ece()
    assert mixed > 0.05  # what one source teaches does not fit the other: the honest figure says so


def test_both_players_of_a_font_leave_its_calibration_together():
    from instropitch.ml.heldout import fit_labels

    parts = [overconfident(seed=s, true_temperature=t) for s, t in ((10, 3.0), (11, 3.0), (30, 1.0), (31, 1.0))]
    proba, y = np.concatenate([p for p, _ in parts]), np.concatenate([labels for _, labels in parts])
    sources = np.repeat(["a", "a-tsf", "b", "c"], [len(labels) for _, labels in parts])
    fits = fit_labels(sources, ["a+a-tsf", "b", "c"])
    assert sorted(set(fits.tolist())) == ["a+a-tsf", "b", "c"]
    assert fit_labels(np.array(["d"]), ["a+a-tsf"]).tolist() == ["d"]  # a source no fit names stands for itself
    # per source, font a's answers were calibrated on its other player's (as over-sure): the figure flattered it
    assert cross_fitted(proba, y, fits).ece() > cross_fitted(proba, y, sources).ece() + 0.02


def foreign_mix(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Familiar notes (foreignness ~1) calibrated as they are, foreign ones (~4) four times too sharp."""
    familiar, y_familiar = overconfident(n=3000, true_temperature=1.0, seed=seed)
    foreign, y_foreign = overconfident(n=3000, true_temperature=4.0, seed=seed + 1)
    rng = np.random.default_rng(seed + 2)
    f = np.concatenate([rng.uniform(0.7, 1.4, 3000), rng.uniform(3.0, 5.5, 3000)])
    return np.concatenate([familiar, foreign]), np.concatenate([y_familiar, y_foreign]), f


def test_a_foreign_temperature_softens_foreign_notes_and_leaves_familiar_ones():
    proba, y, f = foreign_mix()
    cal = calibrate(proba, y, "heldout_sources", foreignness=f)
    assert 0.7 < cal.temperature < 1.5 and cal.foreign_slope > 0.5
    familiar, foreign = f < 2, f > 2
    scaled = cal.apply(proba, f)
    assert expected_calibration_error(scaled[familiar], y[familiar]) < 0.04
    assert expected_calibration_error(scaled[foreign], y[foreign]) < 0.05
    one = Calibration(fit_temperature(proba, y))  # one temperature for both: wrong on each kind
    assert expected_calibration_error(one.apply(proba)[familiar], y[familiar]) > 0.06
    assert cal.apply(proba).shape == proba.shape  # a model without foreignness: the temperature alone
    at_one = map_top_answer(apply_temperature(proba[:3], cal.temperature), cal.top_slope, cal.top_bias)
    np.testing.assert_allclose(cal.apply(proba[:3], np.ones(3)), at_one)


def test_the_foreign_slope_is_never_negative_and_absent_from_older_layouts():
    proba, y = overconfident(true_temperature=2.0)
    rng = np.random.default_rng(5)
    cal = calibrate(proba, y, "heldout_sources", foreignness=rng.uniform(0.5, 5, len(y)))  # unrelated to errors
    assert 0.0 <= cal.foreign_slope < 0.15 and cal.temperature == pytest.approx(2.0, rel=0.15)
    assert Calibration.from_dict({"temperature": 2.0}).foreign_slope == 0.0
    with pytest.raises(ValueError, match="3 notes but 2"):
        Calibration(1.0, foreign_slope=0.5).apply(proba[:3], np.ones(2))


def test_notes_more_familiar_than_any_the_fit_saw_are_not_sharpened_further():
    proba, y, f = foreign_mix()
    cal = calibrate(proba, y, "heldout_sources", foreignness=f)
    assert cal.foreign_floor == pytest.approx(f.min())
    below = np.full(3, f.min() / 100)  # on top of a training note: far below every calibration note
    np.testing.assert_allclose(cal.apply(proba[:3], below), cal.apply(proba[:3], np.full(3, f.min())))
    assert Calibration.from_dict(cal.to_dict()) == cal
    assert Calibration.from_dict({"temperature": 2.0, "foreign_slope": 0.5}).foreign_floor == MIN_FOREIGNNESS


def test_cross_fitted_ece_fits_the_foreign_temperature_on_the_other_sources():
    proba, y, f = foreign_mix(seed=3)
    groups = np.where(np.arange(len(y)) % 2 == 0, "a", "b")
    assert cross_fitted(proba, y, groups, foreignness=f).ece() < cross_fitted(proba, y, groups).ece() - 0.01


def test_familiar_answers_teach_the_temperature_what_a_known_font_needs():
    """Held-out answers are all foreign (4x too sharp): fitted on them alone, the temperature has no notes near
    foreignness 1 and softens a familiar note (right as it is) as much; the familiar answers mend that."""
    proba, y, f = foreign_mix(seed=4)
    known, unheard = f < 2, f > 2
    alone = calibrate(proba[unheard], y[unheard], HELDOUT_SOURCES, foreignness=f[unheard])
    familiar = Familiar(proba[known], y[known], f[known])
    both = calibrate(proba[unheard], y[unheard], HELDOUT_SOURCES, foreignness=f[unheard], familiar=familiar)
    assert (alone.familiar_n, both.familiar_n, both.n) == (0, int(known.sum()), int(unheard.sum()))
    assert both.foreign_floor == pytest.approx(f[known].min())  # the least foreign note it was fitted on

    def shown_ece(cal: Calibration, mask: np.ndarray) -> float:
        return expected_calibration_error(cal.apply(proba[mask], f[mask]), y[mask])

    assert shown_ece(both, known) < 0.04 < 0.1 < shown_ece(alone, known)
    assert shown_ece(both, unheard) < 0.05
    assert Calibration.from_dict(both.to_dict()) == both and Calibration.from_dict({"temperature": 2}).familiar_n == 0
    # without foreignness there is nothing for familiar answers to teach: one temperature, on held-out answers
    assert calibrate(proba[unheard], y[unheard], HELDOUT_SOURCES, familiar=familiar).familiar_n == 0


def test_each_fit_is_scored_by_a_calibration_fitted_on_the_other_fits_familiar_answers_only():
    proba, y, f = foreign_mix(seed=6)
    fits = np.where(np.arange(len(y)) % 2 == 0, "a", "b")
    unheard, known = f > 2, f < 2
    familiar = Familiar(proba[known], y[known], f[known], fits[known])
    spoilt = familiar._replace(y=np.where(familiar.groups == "a", (familiar.y + 1) % 6, familiar.y))  # a's wrong
    args = (proba[unheard], y[unheard], fits[unheard])
    good, bad = (cross_fitted(*args, f[unheard], familiar=k).scaled for k in (familiar, spoilt))
    in_a = fits[unheard] == "a"
    np.testing.assert_allclose(good[in_a], bad[in_a])  # fit a's answers: calibrated on b's familiar answers
    assert not np.allclose(good[~in_a], bad[~in_a])  # fit b's: on a's
    honest = cross_fitted(*args, f[unheard], familiar=familiar)
    assert honest.familiar_ece() < 0.05 and honest.ece() < 0.05
    assert len(honest.familiar_confidence) == len(familiar.y)  # every familiar answer shown, by the other fit's
    before = cross_fitted(*args, f[unheard], familiar=familiar, fitted_on_familiar=False)  # as before them
    assert before.familiar_ece() > 0.1 and cross_fitted(*args, f[unheard]).familiar_ece() is None


def test_the_candidate_floor_is_the_conformal_quantile_of_the_right_classes_probability():
    right = np.linspace(0.01, 0.99, 99)  # 99 notes: the right class at 0.01, 0.02, ... 0.99
    # ceil(100 * 0.9) = 90th largest of 1 - p: the 10th smallest p holds 90 of 99 notes (and the next one)
    assert candidate_floor(right, 0.9) == pytest.approx(0.10)
    assert np.mean(right >= candidate_floor(right, 0.9)) >= 0.9
    assert candidate_floor(right, 0.5) == pytest.approx(0.50)
    assert candidate_floor(right[:8], 0.9) == 0.0  # 8 notes cannot promise 9 in 10: none fitted


def test_candidates_are_the_classes_at_the_floor_and_always_the_answer():
    proba = np.array([[0.5, 0.3, 0.15, 0.05], [0.1, 0.8, 0.06, 0.04], [0.26, 0.25, 0.25, 0.24]])
    assert candidate_mask(proba, 0.2).tolist() == [
        [True, True, False, False],
        [False, True, False, False],
        [True, True, True, True],
    ]
    assert candidate_mask(proba, 0.9).sum(axis=1).tolist() == [1, 1, 1]  # above every class: the answer alone
    assert candidate_mask(proba, 0.9, least=2)[1].tolist() == [True, True, False, False]


def test_calibrate_fits_candidates_that_hold_the_right_class_as_often_as_promised():
    proba, y = overconfident(true_temperature=3.0)
    cal = calibrate(proba, y, "heldout_sources")
    shown = candidate_mask(cal.apply(proba), cal.candidate_floor)
    assert cal.candidate_level == CANDIDATE_LEVEL
    assert shown[np.arange(len(y)), y].mean() == pytest.approx(CANDIDATE_LEVEL, abs=0.005)
    assert cal.candidate_size == pytest.approx(shown.sum(axis=1).mean())
    assert 1.0 < cal.candidate_size < proba.shape[1]  # fewer than every class, more than the answer
    assert Calibration.from_dict(cal.to_dict()) == cal
    legacy = Calibration.from_dict({"temperature": 2.0, "threshold": 0.5})
    assert legacy.candidate_floor == 0.0 and legacy.candidate_level == 0.0  # older versions: the top three


def test_cross_fitted_candidates_say_how_often_they_held_on_a_source_the_floor_never_saw():
    proba_a, y_a = overconfident(seed=10, true_temperature=3.0)
    proba_b, y_b = overconfident(seed=20, true_temperature=3.0)
    proba, y = np.concatenate([proba_a, proba_b]), np.concatenate([y_a, y_b])
    hold, size = cross_fitted(proba, y, np.repeat(["a", "b"], [len(y_a), len(y_b)])).candidates()
    assert hold == pytest.approx(CANDIDATE_LEVEL, abs=0.02) and 1.0 < size < 6  # same kind of source: it transfers
    proba_c, y_c = overconfident(seed=30, true_temperature=1.0)  # a source that is not overconfident
    proba, y = np.concatenate([proba_a, proba_c]), np.concatenate([y_a, y_c])
    hold, _ = cross_fitted(proba, y, np.repeat(["a", "c"], [len(y_a), len(y_c)])).candidates()
    assert hold < CANDIDATE_LEVEL - 0.05  # what one source teaches misleads on the other: the figure says so


def test_cross_fitted_sure_judges_each_groups_sure_answers_by_a_threshold_fitted_on_the_others():
    proba_a, y_a = overconfident(seed=10, spread=10.0)
    proba_b, y_b = overconfident(seed=20, spread=10.0)
    proba, groups = np.concatenate([proba_a, proba_b]), np.repeat(["a", "b"], [len(y_a), len(y_b)])
    share, right = cross_fitted(proba, np.concatenate([y_a, y_b]), groups).sure()
    assert share > 0.1 and right >= 0.93  # the same model on both: what is sure on one is sure on the other
    guessed = np.random.default_rng(3).integers(0, 6, len(y_b))  # a source where every answer is a guess
    share, right = cross_fitted(proba, np.concatenate([y_a, guessed]), groups).sure()
    assert share > 0.05 and right < 0.7  # b's sure answers, judged by a's threshold, are mostly wrong: it says so


def test_a_family_answer_gets_a_threshold_of_its_own_and_is_sure_where_the_class_is_not():
    # six classes in three families of two (0-1, 2-3, 4-5); within a family the answer is a coin toss
    rng = np.random.default_rng(7)
    families = [0, 0, 1, 1, 2, 2]
    y = rng.integers(0, 6, 4000)
    logits = rng.normal(0, 1, (4000, 6))
    logits[np.arange(4000), y] += 6.0
    logits[np.arange(4000), y ^ 1] += 6.0  # the other class of its family: as likely
    proba = softmax(logits)
    by_family = family_proba(proba, families)
    np.testing.assert_allclose(by_family.sum(axis=1), 1.0)
    assert by_family.shape == (4000, 3)
    cal = calibrate(proba, y, HELDOUT_SOURCES, families=families)
    assert cal.threshold == 1.0  # no class answer is right 95 % of the time
    assert TARGET_ACCURACY <= cal.family_threshold < 1.0  # but the family answer is
    assert calibrate(proba, y, HELDOUT_SOURCES).family_threshold == 0.0  # without families: no family answer
    assert Calibration.from_dict({"temperature": 2.0}).family_threshold == 0.0  # older layouts: never sure
    groups = np.where(np.arange(4000) % 2 == 0, "a", "b")
    share, right = cross_fitted(proba, y, groups, families=families).family_sure()
    assert share > 0.5 and right >= 0.95


def too_spread(n: int = 6000, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """A model right as often as it says on most notes, and a font it misreads (a third of the notes, labels unrelated
    to its answers): one temperature for both leaves its sure answers too sure and its unsure ones too unsure."""
    rng = np.random.default_rng(seed)
    proba = softmax(rng.normal(0, 1, (n, 6)) * rng.uniform(0.5, 6.0, (n, 1)))
    y = drawn_from(proba, seed + 1)
    return proba, np.where(rng.random(n) < 0.3, rng.integers(0, 6, n), y)


def test_the_top_answer_map_keeps_the_answer_and_shares_the_rest_as_before():
    proba = softmax(np.random.default_rng(3).normal(0, 2, (200, 5)))
    np.testing.assert_allclose(map_top_answer(proba, 1.0, 0.0), proba)
    mapped = map_top_answer(proba, 0.5, -0.2)
    np.testing.assert_allclose(mapped.sum(axis=1), 1.0)
    assert (mapped.argmax(axis=1) == proba.argmax(axis=1)).all()
    first = proba.max(axis=1)
    expected = 1 / (1 + np.exp(-(0.5 * np.log(first / (1 - first)) - 0.2)))
    free = expected > np.sort(proba, axis=1)[:, -2] / (1 - first + np.sort(proba, axis=1)[:, -2])
    np.testing.assert_allclose(mapped.max(axis=1)[free], expected[free])
    others = ~np.eye(5, dtype=bool)[proba.argmax(axis=1)]
    ratio = mapped[others].reshape(200, 4) / proba[others].reshape(200, 4)
    np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones((1, 4)))  # the rest keeps its shares
    # a map that would put the answer under the runner-up stops where the two tie
    tied = map_top_answer(np.array([[0.5, 0.4, 0.1]]), 1.0, -5.0)[0]
    assert tied[0] == pytest.approx(tied[1]) and tied.sum() == pytest.approx(1.0)
    assert map_top_answer(np.array([[1.0, 0.0, 0.0]]), 0.5, 0.0)[0] == pytest.approx(
        [0.9999, 0.00005, 0.00005], abs=1e-4
    )


def test_the_top_answer_map_gives_to_the_answers_family_first():
    proba = np.array([[0.6, 0.1, 0.2, 0.1], [0.3, 0.05, 0.35, 0.3]])
    families = [0, 0, 1, 1]
    lowered = map_top_answer(proba[:1], 0.5, -0.5, families)[0]
    assert lowered[0] < 0.6 and lowered[2:] == pytest.approx([0.2, 0.1])  # the other family keeps what it had
    assert lowered[:2].sum() == pytest.approx(0.7)  # the family answer too
    raised = map_top_answer(proba[1:], 0.5, 1.5, families)[0]
    assert raised[2] > 0.35 and raised[3] < 0.3 and raised[:2].sum() < 0.35  # the kin gave all it had, then the rest
    np.testing.assert_allclose(raised.sum(), 1.0)
    # lowered below a sibling, the answer stops where the sibling ties it (and stays the answer)
    tied = map_top_answer(np.array([[0.5, 0.4, 0.1]]), 1.0, -5.0, [0, 0, 1])[0]
    assert tied == pytest.approx([0.45, 0.45, 0.1]) and tied.argmax() == 0


def test_the_top_answer_fit_finds_the_slope_the_answers_follow_and_needs_errors():
    rng = np.random.default_rng(4)
    confidence = rng.uniform(0.1, 0.999, 5000)
    right = rng.random(5000) < 1 / (1 + np.exp(-0.5 * np.log(confidence / (1 - confidence))))
    slope, bias = fit_top_answer(confidence, right)
    assert slope == pytest.approx(0.5, abs=0.1) and bias == pytest.approx(0.0, abs=0.15)
    assert fit_top_answer(confidence, np.ones(len(right), bool)) == (1.0, 0.0)  # nothing wrong: nothing to learn
    assert fit_top_answer(confidence[:15], right[:15]) == (1.0, 0.0)


def test_calibrate_mends_what_the_temperature_leaves_and_older_layouts_read_without_it():
    proba, y = too_spread()
    cal = calibrate(proba, y, HELDOUT_SOURCES)
    assert cal.top_slope < 0.8
    tempered_only = Calibration(cal.temperature)
    assert cal.ece < 0.06 < 0.1 < expected_calibration_error(tempered_only.apply(proba), y)
    assert "top answer" in cal.describe()
    assert Calibration.from_dict(cal.to_dict()) == cal
    older = Calibration.from_dict({"temperature": 2.0, "foreign_slope": 0.3})
    assert (older.top_slope, older.top_bias) == (1.0, 0.0)
    np.testing.assert_allclose(older.apply(proba), apply_temperature(proba, 2.0))
    groups = np.arange(len(y)) % 3
    assert cross_fitted(proba, y, groups).ece() < 0.06  # it transfers to answers it was not fitted on
    assert calibrate(proba, y, HELDOUT_SOURCES, families=[0, 0, 1, 1, 2, 2]).families == (0, 0, 1, 1, 2, 2)
