"""Explanation baselines for model.toml, computed from each model's training data.

An answer is explained by replacing one part of the input at a time with a neutral value and
measuring how the answer moves (medfn.tasks.records). For records and vital signs the neutral
value of a feature is its training median: a value the training data actually holds (an alert
patient, 0, rather than a mean of 0.05 that no observation has), and one that a long tail (mass
areas, concavities) does not drag. The training scripts write `[explain]` with the rest of
model.toml; `python -m model_store.build.baselines` rewrites it in place, without retraining
(no artifact's sha256 depends on it). Torch-free, like the data modules it reads.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from model_store.build import model_toml

STORE = Path(__file__).resolve().parent.parent
VITALS_MAX_LENGTH = 48  # [preprocessing] max_length of vitals_risk


def _medians(rows: np.ndarray) -> list[float]:
    """Each column's median, to 6 significant digits (more says nothing about a typical record)."""
    return [float(f"{value:.6g}") for value in np.median(rows.astype(np.float64), axis=0)]


def breast_mass() -> list[tuple[Any, ...]]:
    from model_store.build.breast_cancer_data import split

    x_train, _, _, _, features = split()
    return [
        (
            "[explain]",
            {"baseline": _medians(x_train)},
            f"baseline: each feature's median in the {len(x_train)} training records, in [preprocessing]\n"
            "features order: what a feature is replaced by to weigh it when an answer is explained.",
        )
    ]


def vitals_risk() -> list[tuple[Any, ...]]:
    from model_store.build import vitals_series

    series, _ = vitals_series.generate(vitals_series.TRAIN_N, vitals_series.TRAIN_SEED)
    width = len(vitals_series.FEATURES)
    # The series, then its last hours replaced from each step on, all features and each alone: one run.
    batch = 1 + VITALS_MAX_LENGTH * (width + 1)
    return [
        (
            "[explain]",
            {"baseline": _medians(np.concatenate(series)), "batch": batch},
            f"baseline: each feature's median over the observations of the {vitals_series.TRAIN_N} training\n"
            "series: what a value is replaced by to weigh it when an answer is explained.\n"
            f"batch: the variants of one series share its length, so all {batch} of a {VITALS_MAX_LENGTH}-hour series\n"
            "go in one run, though requests come one series at a time (max_batch_size).",
        )
    ]


BASELINES = {"breast_mass": breast_mass, "vitals_risk": vitals_risk}


def rewrite(model: str) -> None:
    """Replace the model's [explain] table with a freshly computed one, before its [guards] tables
    (which guards.rewrite keeps last), leaving the rest as it is."""
    path = STORE / model / "model.toml"
    kept, skipping = [], False
    for line in path.read_text().rstrip("\n").split("\n"):
        if line.startswith("["):
            skipping = line.startswith("[explain")
        if not skipping:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    table = model_toml.render(BASELINES[model]()).rstrip("\n").split("\n")
    at = next((i for i, line in enumerate(kept) if line.startswith("[guards")), len(kept))
    before = kept[:at]
    while before and not before[-1].strip():
        before.pop()
    path.write_text("\n".join([*before, "", *table, "", *kept[at:]]).rstrip("\n") + "\n")
    print(f"wrote the baselines of {path}")


if __name__ == "__main__":
    for name in sys.argv[1:] or sorted(BASELINES):
        rewrite(name)
