"""What a fitted model's test answers say: metrics, the per-class table and figures for MLflow.

Pure functions of true and predicted classes (the figures also of the inputs); pandas, scikit-learn
and matplotlib are imported inside them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from instropitch.ml.snapshot import Snapshot, class_layout
from instropitch.modelspec import ModelSpec

if TYPE_CHECKING:
    import pandas as pd


MAX_MISCLASSIFIED_SHOWN = 8


def evaluation_metrics(spec: ModelSpec, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1; for pitch models also note-only and octave-only accuracy."""
    from sklearn.metrics import f1_score

    metrics = {
        "test_accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "test_macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)) if len(y_true) else 0.0,
    }
    if spec.label == "midi":
        values = np.asarray(class_layout("midi")[0])
        true_midi, pred_midi = values[y_true], values[y_pred]
        metrics["test_note_accuracy"] = float(np.mean(true_midi % 12 == pred_midi % 12)) if len(y_true) else 0.0
        metrics["test_octave_accuracy"] = float(np.mean(true_midi // 12 == pred_midi // 12)) if len(y_true) else 0.0
    return metrics


def classification_table(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Per-class precision / recall / F1 / support for classes seen in the test set or predicted."""
    import pandas as pd
    from sklearn.metrics import classification_report

    labels = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=[class_names[i] for i in labels], output_dict=True, zero_division=0
    )
    table = pd.DataFrame(report).T
    table.index.name = "class"
    return table


def confusion_figure(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str], title: str) -> Any:
    """Confusion matrix over the classes that occur (most of the 89 pitch classes would be empty)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    labels = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    size = min(4 + 0.18 * len(labels), 22)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(cm, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    names = [class_names[i] for i in labels]
    font = 8 if len(labels) <= 30 else 5
    ax.set_xticks(range(len(labels)), names, rotation=90, fontsize=font)
    ax.set_yticks(range(len(labels)), names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(labels) <= 20:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if cm[i, j]:
                    color = "white" if cm[i, j] > cm.max() / 2 else "black"
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()
    return fig


def misclassified_figure(
    x: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, paths: np.ndarray, class_names: list[str]
) -> Any:
    """Spectrograms of up to 8 wrongly predicted test notes, titled true -> predicted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wrong = np.flatnonzero(y_true != y_pred)[:MAX_MISCLASSIFIED_SHOWN]
    if len(wrong) == 0:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.text(0.5, 0.5, "no misclassified test notes", ha="center", va="center")
        ax.axis("off")
        return fig
    cols = min(4, len(wrong))
    rows = int(np.ceil(len(wrong) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong, strict=False):
        ax.axis("on")
        ax.imshow(x[i].T, origin="lower", aspect="auto", cmap="magma")
        ax.set_title(f"true {class_names[y_true[i]]} / pred {class_names[y_pred[i]]}", fontsize=9)
        ax.set_xlabel(str(paths[i]).rsplit("/", 1)[-1][:40], fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def accuracy_by_instrument(snapshot: Snapshot, test_rows: np.ndarray, correct: np.ndarray) -> str:
    """Test accuracy and test notes per TinySOL instrument, as CSV (whatever the model's label)."""
    import pandas as pd

    frame = pd.DataFrame({"instrument": snapshot.instrument[test_rows], "correct": correct})
    table = frame.groupby("instrument")["correct"].agg(["mean", "size"])
    return table.rename(columns={"mean": "accuracy", "size": "n_test"}).to_csv()
