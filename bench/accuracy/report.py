"""Markdown tables from the JSON that `bench/accuracy/run.py --json` writes (for bench/RESULTS.md).

.venv/bin/python bench/accuracy/report.py /tmp/ood.json /tmp/loso.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PITCH_KEYS = ("exact", "note", "octave", "exact_low", "exact_mid", "exact_high")
INSTRUMENT_KEYS = ("accuracy", "macro_f1")


def _cell(report: dict, key: str) -> str:
    return f"{report[key] * 100:.1f}" if key in report else "–"


def headline_table(results: dict) -> list[str]:
    """One row per model, one column per evaluation set: exact note+octave (pitch) or accuracy (instrument), in %."""
    columns: list[str] = []
    for row in results.values():
        columns += [c for c in row if c not in columns]
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for label, row in results.items():
        key = "exact" if "exact" in next(iter(row.values())) else "accuracy"
        lines.append(f"| {label} | " + " | ".join(_cell(row[c], key) if c in row else "" for c in columns) + " |")
    return lines


def detail_table(results: dict, keys: tuple[str, ...], kind: str) -> list[str]:
    """Every metric of the models of one kind (pitch or instrument), one row per (model, set)."""
    lines = ["| model | set | n | " + " | ".join(keys) + " |", "|---|---|---:|" + "---:|" * len(keys)]
    for label, row in results.items():
        for name, report in row.items():
            if (kind == "pitch") == ("exact" in report):
                cells = " | ".join(_cell(report, k) for k in keys)
                lines.append(f"| {label} | {name} | {int(report.get('n', 0))} | {cells} |")
    return lines


def per_instrument_table(results: dict) -> list[str]:
    """Accuracy per instrument (%) of every instrument model on every set."""
    abbrs: list[str] = []
    for row in results.values():
        for report in row.values():
            abbrs += [k[4:] for k in report if k.startswith("acc_") and k[4:] not in abbrs]
    lines = ["| model | set | " + " | ".join(abbrs) + " |", "|---|---|" + "---:|" * len(abbrs)]
    for label, row in results.items():
        for name, report in row.items():
            if "accuracy" in report:
                lines.append(f"| {label} | {name} | " + " | ".join(_cell(report, f"acc_{a}") for a in abbrs) + " |")
    return lines


def loso_table(results: dict) -> list[str]:
    """Leave-one-source-out: one row per source, in-distribution and held-out (%) per model."""
    sources = [c.removesuffix(" held-out") for c in next(iter(results.values())) if c.endswith(" held-out")]
    head = "| source | " + " | ".join(f"{m} in-dist. | {m} held-out" for m in results) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(results)]
    for source in [*sources, "mean"]:
        cells = []
        for row in results.values():
            for kind in ("in-distribution", "held-out"):
                if source == "mean":
                    values = [_headline(row[f"{s} {kind}"]) for s in sources]
                    cells.append(f"**{100 * sum(values) / len(values):.1f}**")
                else:
                    cells.append(f"{100 * _headline(row[f'{source} {kind}']):.1f}")
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    return lines


def _headline(report: dict) -> float:
    return report["exact"] if "exact" in report else report["accuracy"]


def main(paths: list[str]) -> int:
    for path in paths:
        record = json.loads(Path(path).read_text())
        results = record["results"]
        print(f"### {record['protocol']} ({record['date']}, {record['machine']}, {record['seconds']:.0f} s)\n")
        blocks = [loso_table(results)] if record["protocol"] == "loso" else [headline_table(results)]
        for block in (
            *blocks,
            detail_table(results, PITCH_KEYS, "pitch"),
            detail_table(results, INSTRUMENT_KEYS, "instrument"),
            per_instrument_table(results),
        ):
            print("\n".join(block) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
