"""The model registry side: which version serves (`champion`), and how a version earns it.

A new version only takes the `champion` alias when it is strictly better than the
current champion. With several data sources the measure is the held-out-source accuracy
(the mean, over sources, of a same-recipe model that never saw that source: how the model
will do on recordings unlike its training data), recorded at training time, and compared
only when both versions were held out on the same sources. Otherwise (one source, or a
champion measured on other sources) both models are re-evaluated here on the *same* test
notes (the snapshot of the DAG run that trained the new one), so an old champion trained
on another split is still judged on this one. Every decision is written as tags on the
new version and on its training run, promoted or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from instropitch.ml.snapshot import Snapshot, class_values
from instropitch.ml.tracking import (
    METADATA_KEY,
    TAG_DATA_DIGEST,
    TAG_HELDOUT_ACCURACY,
    TAG_HELDOUT_SOURCES,
    TAG_KIND,
    TAG_MODEL,
    TAG_REGISTERED_VERSION,
)

if TYPE_CHECKING:
    import pandas as pd

CHAMPION = "champion"

TAG_DECISION = "promotion.decision"
TAG_REASON = "promotion.reason"
TAG_NEW_SCORE = "promotion.new_score"
TAG_CHAMPION_SCORE = "promotion.champion_score"
TAG_CHAMPION_BEFORE = "promotion.champion_version_before"
TAG_SNAPSHOT = "promotion.snapshot_digest"
TAG_BASIS = "promotion.basis"
BASIS_HELDOUT = "heldout_source_accuracy"
BASIS_TEST = "test_accuracy"

RUN_COLUMNS = (
    "model",
    "run_id",
    "start_time",
    "test_accuracy",
    "heldout_accuracy",
    "data_digest",
    "version",
    "champion",
)


def registered_name(spec_name: str) -> str:
    return f"instropitch-{spec_name}"


# ------------------------------------------------------------------ loading models


@dataclass
class LoadedModel:
    """A Keras model from MLflow plus the label layout it was trained with."""

    model: Any
    uri: str
    label: str
    input: str
    class_names: list[str]
    input_shape: tuple[int, int]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def class_values(self) -> list[int] | list[str]:
        """Output index -> MIDI number (pitch models) or instrument abbreviation."""
        return class_values(self.label, self.class_names)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, frames, bands) dB spectrograms -> (N, n_classes) probabilities."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"{self.uri} reads spectrograms of shape {self.input_shape}, got {x.shape[1:]}")
        if len(x) == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return np.asarray(self.model.predict(x, batch_size=256, verbose=0))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Most likely label value per row (MIDI numbers or instrument abbreviations)."""
        return np.asarray(self.class_values)[np.argmax(self.predict_proba(x), axis=1)]


def load_model(model_uri: str) -> LoadedModel:
    """Load e.g. `models:/instropitch-pitch@champion` or `models:/instropitch-pitch/3`."""
    import tempfile

    import mlflow
    from mlflow.models import Model

    from instropitch.ml.cnn import configure_tensorflow

    configure_tensorflow()
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        meta = (Model.load(str(Path(local) / "MLmodel")).metadata or {}).get(METADATA_KEY)
        if not meta:
            raise ValueError(f"{model_uri} has no '{METADATA_KEY}' label layout in its MLmodel metadata")
        model = mlflow.tensorflow.load_model(local)
    return LoadedModel(
        model=model,
        uri=model_uri,
        label=meta["label"],
        input=meta["input"],
        class_names=list(meta["class_names"]),
        input_shape=tuple(int(n) for n in meta["input_shape"]),
        info=meta,
    )


def evaluate(loaded: LoadedModel, snapshot: Snapshot) -> float:
    """Accuracy on the snapshot's test notes, using the model's own input and label layout."""
    x = snapshot.inputs_for(loaded.input)[snapshot.is_test]
    truth = (snapshot.midi if loaded.label == "midi" else snapshot.instrument)[snapshot.is_test]
    if len(truth) == 0:
        raise ValueError("the snapshot has no test notes")
    predicted = loaded.predict(x)
    return float(np.mean(predicted.astype(str) == truth.astype(str)))


# ------------------------------------------------------------------------ promotion


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    new_score: float
    champion_score: float | None
    champion_version_before: str | None
    reason: str
    model_name: str = ""
    version: str = ""
    basis: str = BASIS_TEST

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _champion_version(client: Any, name: str, alias: str) -> str | None:
    aliases = client.get_registered_model(name).aliases or {}
    version = aliases.get(alias)
    return str(version) if version is not None else None


def version_accuracies(tags: dict[str, str]) -> tuple[float | None, float | None]:
    """(test accuracy, mean held-out-source accuracy) from a version's tags, each from its own tag.

    The promotion score is the held-out mean when there is one, so it stands in for the test
    accuracy only on versions registered before the `test_accuracy` tag.
    """
    test = tags.get("test_accuracy") or tags.get(TAG_NEW_SCORE)
    heldout = tags.get(TAG_HELDOUT_ACCURACY)
    return (float(test) if test else None), (float(heldout) if heldout else None)


def heldout_score(model_version: Any) -> tuple[float, str] | None:
    """(mean held-out-source accuracy, the sources it was measured on) from a version's tags, if any."""
    tags = model_version.tags or {}
    try:
        return float(tags[TAG_HELDOUT_ACCURACY]), tags.get(TAG_HELDOUT_SOURCES, "")
    except (KeyError, ValueError):
        return None


def _verdict(
    measure: str, new_score: float, champion_score: float, version: str, before: str, alias: str, where: str
) -> tuple[bool, str]:
    """Strictly better wins; ties keep the alias where it is. Returns (promoted, reason)."""
    promoted = new_score > champion_score
    relation = ">" if promoted else ("=" if new_score == champion_score else "<")
    verdict = "promoted" if promoted else f"v{before} stays {alias} (ties keep the {alias})"
    return (
        promoted,
        f"{measure} v{version} {new_score:.4f} {relation} v{before} {champion_score:.4f} ({where}): {verdict}",
    )


def promote(spec_name: str, version: str | int, snapshot: Snapshot, *, alias: str = CHAMPION) -> PromotionDecision:
    """Give `alias` to `version` only if it beats the current holder on the snapshot's test split.

    No holder yet: promoted. Strictly higher test accuracy: promoted. Equal or lower:
    the holder keeps it (ties favour the model already serving). A holder that cannot read
    this snapshot's spectrograms (their shape changed with the features) cannot be
    compared and is replaced. The decision and both scores become tags on the new
    version and on its training run.
    """
    import mlflow

    client = mlflow.MlflowClient()
    name = registered_name(spec_name)
    version = str(version)
    new_mv = client.get_model_version(name, version)
    before = _champion_version(client, name, alias)

    new_heldout = heldout_score(new_mv)
    champion_heldout = heldout_score(client.get_model_version(name, before)) if before not in (None, version) else None
    basis = BASIS_HELDOUT if new_heldout is not None and (before is None or before == version) else BASIS_TEST
    if new_heldout is not None and champion_heldout is not None and champion_heldout[1] == new_heldout[1]:
        basis = BASIS_HELDOUT
    champion_score: float | None = None
    if basis == BASIS_HELDOUT:
        new_score = new_heldout[0]
    else:
        new_score = evaluate(load_model(f"models:/{name}/{version}"), snapshot)
    if before is None:
        promoted, reason = True, f"no {alias} yet"
    elif before == version:
        champion_score = new_score
        promoted, reason = True, f"version {version} already is the {alias}"
    elif basis == BASIS_HELDOUT:
        champion_score = champion_heldout[0]
        promoted, reason = _verdict(
            "held-out-source accuracy", new_score, champion_score, version, before, alias, f"sources {new_heldout[1]}"
        )
    else:
        champion = load_model(f"models:/{name}/{before}")
        shape = snapshot.inputs_for(champion.input).shape[1:]
        if champion.input_shape != shape:
            promoted = True
            reason = (
                f"{alias} v{before} reads spectrograms of shape {champion.input_shape}, this snapshot has {shape}: "
                "it cannot be compared (features changed), so the new version replaces it"
            )
        else:
            champion_score = evaluate(champion, snapshot)
            promoted, reason = _verdict(
                "test accuracy", new_score, champion_score, version, before, alias, f"on snapshot {snapshot.digest}"
            )
            if new_heldout is not None:
                why = "has none" if champion_heldout is None else f"was held out on {champion_heldout[1]}"
                reason += f" (not held-out-source accuracy: v{before} {why}, v{version} on {new_heldout[1]})"

    if promoted and before != version:
        client.set_registered_model_alias(name, alias, version)

    tags = {
        TAG_DECISION: "promoted" if promoted else "rejected",
        TAG_REASON: reason[:4000],
        TAG_NEW_SCORE: f"{new_score:.6f}",
        TAG_CHAMPION_SCORE: "" if champion_score is None else f"{champion_score:.6f}",
        TAG_CHAMPION_BEFORE: before or "",
        TAG_SNAPSHOT: snapshot.digest,
        TAG_BASIS: basis,
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
        if new_mv.run_id:
            client.set_tag(new_mv.run_id, key, value)
    return PromotionDecision(
        promoted=promoted,
        new_score=new_score,
        champion_score=champion_score,
        champion_version_before=before,
        reason=reason,
        model_name=name,
        version=version,
        basis=basis,
    )


# --------------------------------------------------------------------- inspection


@dataclass(frozen=True)
class ChampionInfo:
    model_name: str
    version: str
    model_uri: str
    run_id: str | None
    test_accuracy: float | None
    heldout_accuracy: float | None
    """Mean accuracy on sources each held-out fit never saw (None with one source): what promotion compares."""
    data_digest: str | None
    tags: dict[str, str]

    @property
    def heldout_fits(self) -> str:
        """The held-out fits its held-out accuracy comes from ("a+b,c"; "" without them)."""
        return self.tags.get(TAG_HELDOUT_SOURCES, "")


def latest_version_tags(spec_name: str) -> tuple[str, dict[str, str]] | None:
    """(version, tags) of the newest version of `instropitch-{spec_name}`; None when it has none."""
    import mlflow

    versions = mlflow.MlflowClient().search_model_versions(
        f"name = '{registered_name(spec_name)}'", max_results=1, order_by=["version_number DESC"]
    )
    return (str(versions[0].version), dict(versions[0].tags or {})) if versions else None


def champion_info(spec_name: str, *, alias: str = CHAMPION) -> ChampionInfo | None:
    """The version holding `alias` for `instropitch-{spec_name}`, or None (no model or no alias yet)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    name = registered_name(spec_name)
    try:
        version = _champion_version(client, name, alias)
    except MlflowException:
        return None
    if version is None:
        return None
    mv = client.get_model_version(name, version)
    tags = dict(mv.tags or {})
    test, heldout = version_accuracies(tags)
    return ChampionInfo(
        model_name=name,
        version=version,
        model_uri=f"models:/{name}@{alias}",
        run_id=mv.run_id,
        test_accuracy=test,
        heldout_accuracy=heldout,
        data_digest=tags.get("data_digest"),
        tags=tags,
    )


def list_runs(experiment: str = "instropitch", max_results: int = 20) -> pd.DataFrame:
    """Recent training runs side by side, newest first: model, run, start, test accuracy,
    held-out-source accuracy (empty for one source), data digest, registered version and
    whether that version is the champion now."""
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    empty = pd.DataFrame(columns=list(RUN_COLUMNS))
    if mlflow.get_experiment_by_name(experiment) is None:
        return empty
    runs = mlflow.search_runs(
        experiment_names=[experiment],
        filter_string=f"tags.`{TAG_KIND}` = 'train'",
        max_results=max_results,
        order_by=["attributes.start_time DESC"],
        output_format="pandas",
    )
    if runs.empty:
        return empty

    def column(name: str) -> pd.Series:
        return runs[name] if name in runs.columns else pd.Series([None] * len(runs), index=runs.index)

    table = pd.DataFrame(
        {
            "model": column(f"tags.{TAG_MODEL}"),
            "run_id": runs["run_id"],
            "start_time": column("start_time"),
            "test_accuracy": column("metrics.test_accuracy"),
            "heldout_accuracy": column("metrics.heldout_accuracy"),
            "data_digest": column(f"tags.{TAG_DATA_DIGEST}"),
            "version": column(f"tags.{TAG_REGISTERED_VERSION}"),
        }
    )
    client = mlflow.MlflowClient()
    champions: dict[str, str | None] = {}
    for model in table["model"].dropna().unique():
        try:
            champions[model] = _champion_version(client, registered_name(model), CHAMPION)
        except MlflowException:
            champions[model] = None
    table["champion"] = [
        pd.notna(v) and str(v) != "" and champions.get(m) == str(v)
        for m, v in zip(table["model"], table["version"], strict=True)
    ]
    return table.reset_index(drop=True)
