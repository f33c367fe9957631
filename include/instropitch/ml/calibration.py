"""Confidences that mean what they say: temperature scaling, its error, and when to say "not sure".

A CNN's softmax is sure of itself on recordings unlike its training data: the instrument
model answers a clarinet with "Accordion, 90 %". One temperature `T`, fitted on
predictions for notes the model never saw (held-out sources when the training data has
several, else the validation rows), rescales the probabilities (`p ** (1/T)`, renormalised:
the same as dividing the logits by `T`), so that among answers shown at 70 % about 70 % are
right. The threshold below which an answer is shown as "not sure" is chosen on the same
predictions, and so is the least probability an answer needs to be shown as a candidate: the
candidates of a "not sure" answer hold the right one `CANDIDATE_LEVEL` of the time (a split
conformal set, Sadinle, Lei & Wasserman 2019), however many that takes. After the temperature,
the answer's own probability goes through a slope and a bias on its logit fitted on the same
predictions (`map_top_answer`): the temperature serves every class at once and leaves the answers
of unheard fonts shown too sure when high, too unsure when low. Pure numpy: the predictor applies
it without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

ECE_BINS = 15
TARGET_ACCURACY = 0.95
"""Answers shown as sure should be right this often (on the calibration notes)."""
SURE_Z = 1.645
"""One-sided 95 % bound: "sure" needs the accuracy's Wilson lower bound, not its estimate, to reach the target."""
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 50.0
MAX_SLOPE = 3.0
MIN_FOREIGNNESS = 1e-3
"""The lowest foreignness read when a calibration does not say (versions trained before `foreign_floor`)."""
MIN_ERRORS_TO_SHARPEN = 10
"""With fewer wrong answers than this, the fit may soften the probabilities but not sharpen them."""
TOP_SLOPE_RANGE = (0.1, 3.0)
"""The slope `fit_top_answer` may take on the top answer's logit."""
CANDIDATE_LEVEL = 0.9
"""The candidates shown with a "not sure" answer should hold the right one this often (on the calibration notes)."""
HELDOUT_SOURCES = "heldout_sources"
"""`Calibration.fitted_on` for answers of fits that never heard the notes' source."""


class Familiar(NamedTuple):
    """What the held-out fits answered on notes of the sources they did train on (test rows: never fitted on),
    with each note's foreignness and the fit (`groups`: its held-out label) that answered it.

    The temperature is fitted on these beside the held-out answers: fitted on unheard notes alone it also
    softens the notes of a font the model knows (shown at ~0.77 while 95 % right, bench/RESULTS.md), and the
    foreignness it grows with cannot tell the two apart unless it sees both. The answer's own map and the
    "sure" thresholds stay on held-out answers: they are what a user's recording is like.
    """

    proba: np.ndarray
    y: np.ndarray
    foreignness: np.ndarray
    groups: np.ndarray | None = None

    def of(self, mask: np.ndarray) -> Familiar:
        return Familiar(*(None if a is None else np.asarray(a)[mask] for a in self))

    def answered_by(self, group: str, others: bool = False) -> Familiar:
        """The answers of the fit `group` (or, with `others`, of every other fit)."""
        groups = np.asarray(self.groups if self.groups is not None else [None] * len(self.y))
        return self.of((groups != group) if others else (groups == group))


def apply_temperature(proba: np.ndarray, temperature: float | np.ndarray) -> np.ndarray:
    """Probabilities (rows sum to 1) rescaled by `temperature` (one, or one per row): softmax(log p / T)."""
    p = np.asarray(proba, dtype=np.float64)
    t = np.asarray(temperature, dtype=np.float64)
    if t.ndim == 0 and float(t) == 1.0:
        return p
    logits = np.log(np.clip(p, 1e-12, 1.0)) / (t[:, None] if t.ndim else float(t))
    logits -= logits.max(axis=-1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=-1, keepdims=True)


def negative_log_likelihood(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean -log p(true class)."""
    p = np.clip(np.asarray(proba, dtype=np.float64)[np.arange(len(y)), y], 1e-12, 1.0)
    return float(-np.mean(np.log(p)))


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood (golden-section search on log T).

    On answers that are (nearly) all right the likelihood only grows as T falls, so the fit
    would sharpen without limit: the pitch model, right on every validation note, got T = 0.12
    and then showed "100 %" for wrong notes on tones it had never heard. With fewer than
    `MIN_ERRORS_TO_SHARPEN` errors the data cannot say how sure to be, and T stays >= 1.
    """
    if len(y) == 0:
        return 1.0
    errors = int((np.asarray(proba).argmax(axis=1) != np.asarray(y)).sum())
    lowest = MIN_TEMPERATURE if errors >= MIN_ERRORS_TO_SHARPEN else 1.0
    lo, hi = np.log(lowest), np.log(MAX_TEMPERATURE)
    golden = (np.sqrt(5) - 1) / 2

    def loss(log_t: float) -> float:
        return negative_log_likelihood(apply_temperature(proba, float(np.exp(log_t))), y)

    a, b = lo + (1 - golden) * (hi - lo), lo + golden * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = lo + (1 - golden) * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + golden * (hi - lo)
            fb = loss(b)
    return float(np.exp((lo + hi) / 2))


def foreign_temperatures(
    temperature: float, slope: float, foreignness: np.ndarray, floor: float = MIN_FOREIGNNESS
) -> np.ndarray:
    """Per note: `temperature` x foreignness ** `slope` (foreignness 1: a validation-like note, `ml.foreignness`).

    Foreignness below `floor` (the least foreign note the fit saw) reads as `floor`: a note on top of
    a training note would otherwise be sharpened further than any answer the fit has seen."""
    f = np.clip(np.asarray(foreignness, dtype=np.float64), max(floor, MIN_FOREIGNNESS), None)
    return np.clip(temperature * f**slope, MIN_TEMPERATURE, MAX_TEMPERATURE)


def fit_foreign_temperature(proba: np.ndarray, foreignness: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(temperature, slope) of `foreign_temperatures` minimising the negative log-likelihood.

    The slope is kept in [0, `MAX_SLOPE`]: a more foreign note is never answered more surely.
    The same floor as `fit_temperature` on sharpening: with too few errors, T stays >= 1 at
    foreignness 1.
    """
    from scipy.optimize import minimize

    y = np.asarray(y)
    if len(y) == 0:
        return 1.0, 0.0
    errors = int((np.asarray(proba).argmax(axis=1) != y).sum())
    lowest = MIN_TEMPERATURE if errors >= MIN_ERRORS_TO_SHARPEN else 1.0

    def loss(params: np.ndarray) -> float:
        t = foreign_temperatures(float(np.exp(params[0])), float(params[1]), foreignness)
        return negative_log_likelihood(apply_temperature(proba, t), y)

    start = np.array([np.log(max(fit_temperature(proba, y), lowest)), 0.0])
    bounds = [(np.log(lowest), np.log(MAX_TEMPERATURE)), (0.0, MAX_SLOPE)]
    best = minimize(loss, start, method="L-BFGS-B", bounds=bounds)
    return float(np.exp(best.x[0])), float(best.x[1])


def map_top_answer(
    proba: np.ndarray, slope: float = 1.0, bias: float = 0.0, families: list[int] | tuple[int, ...] = ()
) -> np.ndarray:
    """Each row's top probability `p` replaced by sigmoid(`slope` x logit p + `bias`); (1, 0) changes nothing.

    What the answer gains or loses is taken from or given to the other classes of its family first
    (`families`: each class's; none given, every class is a family of its own), then to the rest, each
    in proportion to what it had: on unheard fonts most wrong answers are a sibling (a violin taken for
    a viola), and the family answer (`family_proba`) keeps the sum it had whenever its family can give or
    take the change (an accordion, alone in its family, gives to every other). The answer stays on top:
    lowered, it stops where the class it gives to would tie it.
    """
    p = np.asarray(proba, dtype=np.float64)
    if (slope == 1.0 and bias == 0.0) or len(p) == 0 or p.shape[1] < 2:
        return p
    rows = np.arange(len(p))
    top = p.argmax(axis=1)
    first = p[rows, top]
    logit = np.log(np.clip(first, 1e-12, None)) - np.log(np.clip(1.0 - first, 1e-12, None))
    mapped = 1.0 / (1.0 + np.exp(-(slope * logit + bias)))
    family = np.asarray(families) if len(families) else np.arange(p.shape[1])
    kin = family[None, :] == family[top][:, None]
    kin[rows, top] = False
    others = p.copy()
    others[rows, top] = 0.0
    kin_mass = (others * kin).sum(axis=1)
    rest_mass = others.sum(axis=1) - kin_mass
    # Lowered, the answer gives to its kin (else to the rest): it may go down to where the largest of them ties.
    to_kin = kin_mass > 0
    receiving = np.where(to_kin, kin_mass, rest_mass)
    largest_kin, largest_rest = (np.where(mask, others, 0.0).max(axis=1) for mask in (kin, ~kin))
    largest = np.where(to_kin, largest_kin, largest_rest)
    tie = largest * (receiving + first) / np.clip(receiving + largest, 1e-300, None)
    value = np.maximum(mapped, np.maximum(tie, np.where(to_kin, largest_rest, 0.0)))
    value = np.where(mapped > first, mapped, np.minimum(value, first))
    change = value - first
    from_kin = np.where(change > 0, np.minimum(change, kin_mass), np.where(to_kin, change, 0.0))
    scale_kin = 1.0 - from_kin / np.clip(kin_mass, 1e-300, None)
    scale_rest = 1.0 - (change - from_kin) / np.clip(rest_mass, 1e-300, None)
    others *= np.where(kin, scale_kin[:, None], scale_rest[:, None])
    empty = others.sum(axis=1) <= 0  # a one-hot row lowered: what it gives is spread evenly
    others[empty] = (1.0 - value[empty, None]) / (p.shape[1] - 1)
    others[rows, top] = np.maximum(value, np.nextafter(others.max(axis=1), 2.0))  # a tie must not flip it
    return others


def fit_top_answer(confidence: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """(slope, bias) of `map_top_answer` minimising the log-loss of "the answer is right" (Platt scaling of the
    top answer: Gupta & Ramdas 2022, "Top-label calibration").

    The temperature fits the whole distribution; on unheard fonts it leaves the answers' own confidence too
    spread, its high values too high and its low ones too low, which one slope and bias on their logit mend.
    With fewer than `MIN_ERRORS_TO_SHARPEN` wrong (or right) answers the data cannot say: (1, 0).
    """
    from scipy.optimize import minimize

    conf = np.clip(np.asarray(confidence, dtype=np.float64), 1e-6, 1.0 - 1e-6)
    ok = np.asarray(correct, dtype=np.float64)
    if min(len(ok) - ok.sum(), ok.sum()) < MIN_ERRORS_TO_SHARPEN:
        return 1.0, 0.0
    z = np.log(conf / (1.0 - conf))

    def loss(params: np.ndarray) -> float:
        q = np.clip(1.0 / (1.0 + np.exp(-(params[0] * z + params[1]))), 1e-12, 1.0 - 1e-12)
        return float(-np.mean(ok * np.log(q) + (1.0 - ok) * np.log(1.0 - q)))

    best = minimize(loss, np.array([1.0, 0.0]), method="L-BFGS-B", bounds=[TOP_SLOPE_RANGE, (-5.0, 5.0)])
    return float(best.x[0]), float(best.x[1])


def reliability(proba: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> list[tuple[float, float, int]]:
    """Per confidence bin (equal width over [0, 1]): (mean confidence, accuracy, count) of the top-1 answers."""
    p = np.asarray(proba, dtype=np.float64)
    conf = p.max(axis=1) if len(p) else np.zeros(0)
    correct = (p.argmax(axis=1) == np.asarray(y)) if len(p) else np.zeros(0, dtype=bool)
    return answer_reliability(conf, correct, bins)


def answer_reliability(
    confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
) -> list[tuple[float, float, int]]:
    """`reliability` from answers already given: their confidences and whether each was right."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        out.append((float(conf[mask].mean()) if n else 0.0, float(ok[mask].mean()) if n else 0.0, n))
    return out


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Σ_bins (n_b / N) · |accuracy_b − confidence_b| of the top-1 answers (15 bins by default)."""
    return _ece(reliability(proba, y, bins))


def answer_ece(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """`expected_calibration_error` of answers already given (e.g. the confidence a person was shown)."""
    return _ece(answer_reliability(confidence, correct, bins))


def chance_ece(confidence: np.ndarray, bins: int = ECE_BINS, draws: int = 200, seed: int = 0) -> float:
    """The median ECE of answers whose `confidence` is exactly right, each right with that probability: what the
    ECE of so few answers shows by chance. At the demo's confidences 564 notes show 0.049, the nightly's four
    fits' 2,913 show 0.021 (bench/RESULTS.md, "How much ECE a few hundred notes show by chance"): an ECE near
    it is as good as can be told from those notes."""
    conf = np.asarray(confidence, dtype=np.float64)
    if len(conf) == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    return float(np.median([answer_ece(conf, rng.random(len(conf)) < conf, bins) for _ in range(draws)]))


def _ece(table: list[tuple[float, float, int]]) -> float:
    total = sum(n for _, _, n in table)
    if total == 0:
        return 0.0
    return float(sum(n * abs(acc - conf) for conf, acc, n in table) / total)


def choose_threshold(
    confidence: np.ndarray, correct: np.ndarray, target: float = TARGET_ACCURACY, z: float = SURE_Z
) -> float:
    """The lowest confidence at which the answers at or above it are right `target` of the time, and
    never below `target` itself.

    "Right often enough" is judged by the Wilson lower bound at `z` (0: the plain share), so that
    a handful of lucky answers cannot make a threshold: at 95 % it takes 52 right answers in a row.
    The floor keeps each sure answer's own confidence honest: on notes almost all right the set rule
    alone would go down to their least confidence (0.12 for the demo's pitch model), so "F#2 55 %,
    sure" against F#1 at 45 %. Answers below it are shown as "not sure". 1.0 (nothing is sure) when no
    threshold reaches it.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if len(conf) == 0:
        return 1.0
    order = np.argsort(-conf, kind="stable")
    reaching = np.flatnonzero(wilson_lower_bound(np.cumsum(ok[order]), np.arange(1, len(conf) + 1), z) >= target)
    if len(reaching) == 0:
        return 1.0
    return sure_floor(float(conf[order][reaching[-1]]), target)


def sure_floor(threshold: float, target: float = TARGET_ACCURACY) -> float:
    """A "not sure" threshold raised to `target`: no answer is shown as sure with less confidence than
    sure answers must have (0 stays 0: an uncalibrated version is never "not sure")."""
    return max(threshold, target) if threshold > 0 else threshold


def wilson_lower_bound(right: np.ndarray, n: np.ndarray, z: float = SURE_Z) -> np.ndarray:
    """The Wilson score interval's lower end for `right` successes in `n` tries (the share itself at z = 0)."""
    right, n = np.asarray(right, dtype=np.float64), np.asarray(n, dtype=np.float64)
    share = right / n
    spread = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return (share + z * z / (2 * n) - spread) / (1 + z * z / n)


def candidate_floor(true_proba: np.ndarray, level: float = CANDIDATE_LEVEL) -> float:
    """The least probability a class needs to be a candidate, so that the candidates hold the right class
    `level` of the time: the split-conformal quantile of the right classes' probabilities
    (the ⌈(n+1)·level⌉-th largest 1 − p). 0.0 (none fitted) when the notes are too few for `level`."""
    p = np.sort(np.asarray(true_proba, dtype=np.float64))
    rank = len(p) + 1 - int(np.ceil((len(p) + 1) * level))  # 1-based, from the smallest
    return float(p[rank - 1]) if rank >= 1 else 0.0


def candidate_mask(proba: np.ndarray, floor: float, least: int = 1) -> np.ndarray:
    """Per row, which classes are candidates: those at or above `floor`, and always the `least` most likely."""
    p = np.asarray(proba, dtype=np.float64)
    top = np.zeros(p.shape, dtype=bool)
    np.put_along_axis(top, np.argsort(-p, axis=-1, kind="stable")[..., :least], True, axis=-1)
    return (p >= floor) | top


def candidates_held(proba: np.ndarray, y: np.ndarray, floor: float | np.ndarray) -> tuple[float, float]:
    """(how often the candidates at `floor` held the right class, how many there were on average)."""
    shown = candidate_mask(proba, floor)
    return float(shown[np.arange(len(shown)), np.asarray(y)].mean()), float(shown.sum(axis=1).mean())


def family_proba(proba: np.ndarray, families: list[int]) -> np.ndarray:
    """Each row's probabilities summed by family (`families[k]`: class k's family index)."""
    index = np.asarray(families)
    return np.asarray(proba, dtype=np.float64) @ np.eye(int(index.max()) + 1)[index]


def cross_calibrations(
    proba: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    foreignness: np.ndarray | None = None,
    families: list[int] | None = None,
    familiar: Familiar | None = None,
) -> Iterator[tuple[str, np.ndarray, Calibration]]:
    """(group, its rows, the calibration fitted on the other groups' answers) for each group (with one group,
    on its own answers). `familiar` answers come along by the fit that gave them: the other fits' only."""
    groups = np.asarray(groups)
    names = sorted(set(groups.tolist()))
    f = None if foreignness is None else np.asarray(foreignness, dtype=np.float64)
    for name in names:
        mine = groups == name
        fit = ~mine if len(names) > 1 else mine
        known = None if familiar is None else familiar.answered_by(name, others=len(names) > 1)
        fitted = calibrate(
            proba[fit],
            y[fit],
            HELDOUT_SOURCES,
            foreignness=None if f is None else f[fit],
            families=families,
            familiar=known,
        )
        yield name, mine, fitted


@dataclass(frozen=True)
class CrossFitted:
    """Each group's answers shown by the calibration fitted on the other groups' answers (`cross_calibrations`),
    with what that calibration decides for them: the calibration's honest figures. Fitting and scoring on the
    same answers would flatter it; with one group it falls back to that."""

    y: np.ndarray
    scaled: np.ndarray
    floors: np.ndarray
    """Each row's candidate floor."""
    thresholds: np.ndarray
    """Each row's "not sure" threshold."""
    family_thresholds: np.ndarray
    families: tuple[int, ...] = ()
    familiar_confidence: np.ndarray | None = None
    """The familiar answers' confidence, each fit's shown by the calibration fitted on the other fits'."""
    familiar_correct: np.ndarray | None = None

    def ece(self, bins: int = ECE_BINS) -> float:
        return expected_calibration_error(self.scaled, self.y, bins)

    def candidates(self) -> tuple[float, float]:
        """(how often the candidates held the right class, how many there were on average): the honest figure of
        `CANDIDATE_LEVEL`."""
        return candidates_held(self.scaled, self.y, self.floors[:, None])

    def sure(self) -> tuple[float, float]:
        """(share of notes answered as sure, how often those were right; 0.0 when none is): the honest figure of
        `TARGET_ACCURACY`."""
        return _sure_share(self.scaled.max(axis=1) >= self.thresholds, self.scaled.argmax(axis=1) == self.y)

    def family_sure(self) -> tuple[float, float]:
        """`sure` of the family answer (the probabilities summed by family, `family_proba`)."""
        by_family = family_proba(self.scaled, list(self.families))
        right = by_family.argmax(axis=1) == np.asarray(self.families)[self.y]
        return _sure_share(by_family.max(axis=1) >= self.family_thresholds, right)

    def familiar_ece(self, bins: int = ECE_BINS) -> float | None:
        """How a note of a font the model trained on is shown (too unsure, when fitted on unheard notes only);
        None without familiar answers (or foreignness)."""
        if self.familiar_confidence is None:
            return None
        return answer_ece(self.familiar_confidence, self.familiar_correct, bins)


def _sure_share(sure: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    return float(sure.mean()), float(right[sure].mean()) if sure.any() else 0.0


def cross_fitted(
    proba: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    foreignness: np.ndarray | None = None,
    families: list[int] | None = None,
    familiar: Familiar | None = None,
    fitted_on_familiar: bool = True,
) -> CrossFitted:
    """Each group's answers calibrated by what was fitted on the other groups' (`cross_calibrations`), one pass for
    every honest figure. The `familiar` answers are shown the same way: each fit's by the calibration fitted on
    the other fits' answers, with their familiar ones unless `fitted_on_familiar` is False (as calibrated
    before them); without `foreignness` they teach the calibration nothing and are not shown."""
    y = np.asarray(y)
    f = None if foreignness is None else np.asarray(foreignness, dtype=np.float64)
    scaled = np.empty_like(np.asarray(proba, dtype=np.float64))
    floors, thresholds, family_thresholds = np.zeros(len(scaled)), np.zeros(len(scaled)), np.zeros(len(scaled))
    confidence, correct = [], []
    fit_with = familiar if fitted_on_familiar else None
    for name, mine, fitted in cross_calibrations(proba, y, groups, foreignness, families, fit_with):
        scaled[mine] = fitted.apply(proba[mine], None if f is None else f[mine])
        floors[mine], thresholds[mine] = fitted.candidate_floor, fitted.threshold
        family_thresholds[mine] = fitted.family_threshold
        if familiar is not None and f is not None:
            theirs = familiar.answered_by(name)
            shown = fitted.apply(theirs.proba, theirs.foreignness)
            confidence.append(shown.max(axis=1))
            correct.append(shown.argmax(axis=1) == theirs.y)
    return CrossFitted(
        y,
        scaled,
        floors,
        thresholds,
        family_thresholds,
        tuple(families or ()),
        np.concatenate(confidence) if confidence else None,
        np.concatenate(correct) if correct else None,
    )


@dataclass(frozen=True)
class Calibration:
    """What a model version carries (in its label layout) so that its confidences can be shown."""

    temperature: float = 1.0
    """Divides the logits: above 1 softens an overconfident model (of a note as familiar as a validation note)."""
    foreign_slope: float = 0.0
    """A note's temperature is `temperature` x its foreignness ** this (`ml.foreignness`); 0: one for all."""
    foreign_floor: float = MIN_FOREIGNNESS
    """The least foreignness of the notes it was fitted on: lower reads as this (`foreign_temperatures`)."""
    threshold: float = 0.0
    """Calibrated confidences below it are shown as "not sure" (0: never)."""
    fitted_on: str = "none"
    """`heldout_sources` (notes of sources the fitting models never saw), `validation`, or `none`."""
    n: int = 0
    ece_raw: float = 0.0
    """Expected calibration error of the softmax as it comes, on those notes."""
    ece: float = 0.0
    """The same after scaling (fitted and measured on the same notes: see `cross_fitted`)."""
    coverage: float = 1.0
    """Share of the calibration notes answered as sure at `threshold`."""
    answered_accuracy: float = 0.0
    """Accuracy of those answers."""
    candidate_floor: float = 0.0
    """Calibrated probabilities at or above it are shown as candidates of a "not sure" answer (0: none fitted,
    versions trained before it: the top three are shown)."""
    candidate_level: float = 0.0
    """How often those candidates hold the right answer, by construction, on the calibration notes."""
    candidate_size: float = 0.0
    """How many candidates there were on average on those notes (at least one: the answer)."""
    top_slope: float = 1.0
    top_bias: float = 0.0
    """After the temperature, the top answer's logit x `top_slope` + `top_bias` (`map_top_answer`); (1, 0) for
    versions calibrated before it."""
    families: tuple[int, ...] = ()
    """Each class's family, when fitted with them: the top answer's change goes to its family first."""
    family_threshold: float = 0.0
    """The family answer (the calibrated probabilities summed by family, `family_proba`) is shown as sure at or
    above it (0: never; versions fitted before it, or a label without families)."""
    familiar_n: int = 0
    """Answers on notes of fonts the fits trained on that the temperature was fitted on beside the `n` (`Familiar`;
    0: held-out answers only, as every version calibrated before it)."""

    def temperatures(self, n: int, foreignness: np.ndarray | None = None) -> float | np.ndarray:
        """The temperature of each of `n` notes: one for all, unless the slope and their foreignness say more."""
        if foreignness is None or self.foreign_slope == 0.0:
            return self.temperature
        f = np.asarray(foreignness, dtype=np.float64).reshape(-1)
        if len(f) != n:
            raise ValueError(f"{n} notes but {len(f)} foreignness values")
        return foreign_temperatures(self.temperature, self.foreign_slope, f, self.foreign_floor)

    def apply(self, proba: np.ndarray, foreignness: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probabilities; `foreignness` (per row, `ml.foreignness`) when the model answers it."""
        scaled = apply_temperature(proba, self.temperatures(len(proba), foreignness))
        return map_top_answer(scaled, self.top_slope, self.top_bias, self.families)

    def describe(self) -> str:
        """The scaling in a few characters, for figures and logs."""
        text = f"T = {self.temperature:.2f}"
        if self.foreign_slope != 0.0:
            text += f" x foreignness^{self.foreign_slope:.2f}"
        if (self.top_slope, self.top_bias) != (1.0, 0.0):
            text += f", top answer {self.top_slope:.2f} x logit {self.top_bias:+.2f}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Calibration:
        """From a label layout's `calibration` (absent in versions trained before it: identity, never "not sure";
        a threshold fitted before `sure_floor` is raised to it)."""
        if not data:
            return cls()
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if "threshold" in known:
            known["threshold"] = sure_floor(float(known["threshold"]))
        if "families" in known:
            known["families"] = tuple(int(f) for f in known["families"])
        return cls(**known)


def calibrate(
    proba: np.ndarray,
    y: np.ndarray,
    fitted_on: str,
    target: float = TARGET_ACCURACY,
    foreignness: np.ndarray | None = None,
    families: list[int] | None = None,
    familiar: Familiar | None = None,
) -> Calibration:
    """Fit the temperature, the "not sure" threshold and the candidates' floor on predictions for notes
    the model never saw.

    With `foreignness` (of each note, to the model that answered it) the temperature grows
    with it (`fit_foreign_temperature`), fitted on the `familiar` answers too when given (notes of
    sources the fits trained on: `Familiar`); everything after the temperature is fitted on the
    unheard notes alone. With `families` (each class's family) the family answer gets a "not sure"
    threshold of its own, chosen the same way: on unheard sources a bowed string is often taken for
    another, rarely for a trumpet.
    """
    y = np.asarray(y)
    if len(y) == 0:
        return Calibration()
    floor, familiar_n = MIN_FOREIGNNESS, 0
    if foreignness is None:
        temperature, slope = fit_temperature(proba, y), 0.0
    else:
        familiar_n = 0 if familiar is None else len(familiar.y)
        known = familiar if familiar_n else Familiar(proba[:0], y[:0], np.zeros(0))
        proba_t = np.concatenate([np.asarray(proba, dtype=np.float64), known.proba])
        foreignness_t = np.concatenate([np.asarray(foreignness, dtype=np.float64), known.foreignness])
        temperature, slope = fit_foreign_temperature(proba_t, foreignness_t, np.concatenate([y, known.y]))
        floor = max(float(np.min(foreignness_t)), MIN_FOREIGNNESS)
    tempered = Calibration(temperature, slope, floor).apply(proba, foreignness)
    top_slope, top_bias = fit_top_answer(tempered.max(axis=1), tempered.argmax(axis=1) == y)
    scaled = map_top_answer(tempered, top_slope, top_bias, families or ())
    confidence = scaled.max(axis=1)
    correct = scaled.argmax(axis=1) == y
    threshold = choose_threshold(confidence, correct, target)
    answered = confidence >= threshold
    family_threshold = 0.0
    if families is not None:
        by_family = family_proba(scaled, families)
        right_family = by_family.argmax(axis=1) == np.asarray(families)[y]
        family_threshold = choose_threshold(by_family.max(axis=1), right_family, target)
    least = candidate_floor(scaled[np.arange(len(y)), y])
    _, size = candidates_held(scaled, y, least)
    return Calibration(
        temperature=temperature,
        foreign_slope=slope,
        foreign_floor=floor,
        top_slope=top_slope,
        top_bias=top_bias,
        families=tuple(families or ()),
        threshold=threshold,
        fitted_on=fitted_on,
        n=int(len(y)),
        ece_raw=expected_calibration_error(proba, y),
        ece=expected_calibration_error(scaled, y),
        coverage=float(answered.mean()),
        answered_accuracy=float(correct[answered].mean()) if answered.any() else 0.0,
        candidate_floor=least,
        candidate_level=CANDIDATE_LEVEL if least > 0 else 0.0,
        candidate_size=size if least > 0 else 0.0,
        family_threshold=family_threshold,
        familiar_n=familiar_n,
    )


def reliability_figure(
    proba: np.ndarray, y: np.ndarray, calibration: Calibration, title: str, foreignness: np.ndarray | None = None
) -> Any:
    """The reliability diagram before and after scaling (accuracy against confidence per bin)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
    for label, p, colour in (
        (f"raw (ECE {calibration.ece_raw:.3f})", proba, "#c0392b"),
        (f"{calibration.describe()} (ECE {calibration.ece:.3f})", calibration.apply(proba, foreignness), "#7b2cbf"),
    ):
        table = [(c, a) for c, a, n in reliability(p, y) if n]
        if table:
            conf, acc = zip(*table, strict=True)
            ax.plot(conf, acc, marker="o", color=colour, label=label)
    if calibration.threshold > 0:
        ax.axvline(calibration.threshold, color="0.3", linewidth=1, linestyle=":", label="not sure below")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence shown", ylabel="accuracy", title=title)
    ax.legend(loc="upper left", fontsize=8)
    ax.text(
        0.98,
        0.02,
        f"{calibration.n} notes ({calibration.fitted_on}); sure: {calibration.coverage:.0%} "
        f"answered, {calibration.answered_accuracy:.1%} right"
        + (
            f"\nnot sure: {calibration.candidate_size:.1f} candidates a note hold it {calibration.candidate_level:.0%}"
            if calibration.candidate_level
            else ""
        ),
        ha="right",
        va="bottom",
        fontsize=8,
        transform=ax.transAxes,
    )
    fig.tight_layout()
    return fig
