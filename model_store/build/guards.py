"""Out-of-distribution guards for model.toml, computed from each model's training data.

A served model should say when an input lies outside what it learned from: a CT sent to a
radiograph classifier, a note of words it never saw, a value beyond any training record's.
Each function below gives one model's `[guards]` tables. The training scripts write them with
the rest of model.toml; `python -m model_store.build.guards` rewrites them in place, without
retraining (no artifact's sha256 depends on them). Torch-free, like the data modules it reads.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from model_store.build import model_toml

STORE = Path(__file__).resolve().parent.parent


def _ranges(names: list[str], rows: np.ndarray) -> dict[str, list[float]]:
    """Each column's training range, widened to 4 significant digits so no training value lies outside."""

    def outward(value: float, up: bool) -> float:
        if value == 0:
            return 0.0
        step = 10 ** (math.floor(math.log10(abs(value))) - 3)
        return float(round((math.ceil(value / step) if up else math.floor(value / step)) * step, 12))

    lows, highs = rows.min(axis=0), rows.max(axis=0)
    return {
        name: [outward(float(lo), False), outward(float(hi), True)]
        for name, lo, hi in zip(names, lows, highs, strict=True)
    }


def breast_mass() -> list[tuple[Any, ...]]:
    from model_store.build.breast_cancer_data import split

    x_train, _, _, _, features = split()
    return _range_tables(_ranges(features, x_train), f"the {len(x_train)} training records")


def vitals_risk() -> list[tuple[Any, ...]]:
    from model_store.build import vitals_series

    series, _ = vitals_series.generate(vitals_series.TRAIN_N, vitals_series.TRAIN_SEED)
    observed = _ranges(vitals_series.FEATURES, np.concatenate(series))
    return _range_tables(observed, f"the {vitals_series.TRAIN_N} training series")


def notes_classifier() -> list[tuple[Any, ...]]:
    from model_store.build import notes_corpus

    vocab = json.loads((STORE / "notes_classifier" / "1" / "vocab.json").read_text())
    texts, _ = notes_corpus.generate(notes_corpus.TRAIN_N, notes_corpus.TRAIN_SEED)
    shares = [np.mean([t in vocab for t in tokens]) for tokens in map(notes_corpus.tokenize, texts) if tokens]
    floor = math.floor(float(np.percentile(shares, 1)) * 20) / 20  # the 1st percentile, down to a 5% step
    return [
        (
            "[guards.vocabulary]",
            {"min_known_share": floor, "policy": "warn"},
            f"Share of a note's words the vocabulary knows: 99% of the {notes_corpus.TRAIN_N} training notes\n"
            f'had at least {floor:.0%}. Below it the answer comes with a warning (policy "reject": a 422).',
        )
    ]


def scan_classifier() -> list[tuple[Any, ...]]:
    # The phantoms are written as DX (model_store/build/chest_phantoms.py); CR is the same kind of
    # image, a projection radiograph, from a storage-phosphor plate.
    return _modality_tables(["CR", "DX"], ["MONOCHROME1", "MONOCHROME2"], "projection chest radiographs")


def scan_segmenter() -> list[tuple[Any, ...]]:
    return _modality_tables(["CT"], ["MONOCHROME2"], "CT slices in Hounsfield units (model_store/build/ct_phantoms.py)")


def _modality_tables(accept: list[str], photometric: list[str], trained_on: str) -> list[tuple[Any, ...]]:
    return [
        (
            "[guards.modality]",
            {"accept": accept, "photometric": photometric, "policy": "reject"},
            f"Trained on {trained_on}: a DICOM of another modality or photometric interpretation\n"
            'is refused (422); policy "warn" answers with a warning instead. PNG and JPEG carry neither.',
        )
    ]


def _range_tables(ranges: dict[str, list[float]], trained_on: str) -> list[tuple[Any, ...]]:
    return [
        (
            "[guards.ranges]",
            {"policy": "warn"},
            f"Each feature's range in {trained_on}: a value outside it comes back with a\n"
            'warning (policy "reject": a 422 naming the feature).',
        ),
        ("[guards.ranges.features]", ranges),
    ]


GUARDS = {
    "breast_mass": breast_mass,
    "notes_classifier": notes_classifier,
    "scan_classifier": scan_classifier,
    "scan_segmenter": scan_segmenter,
    "vitals_risk": vitals_risk,
}


def rewrite(model: str) -> None:
    """Replace the model's [guards...] tables with freshly computed ones, leaving the rest as it is."""
    path = STORE / model / "model.toml"
    kept, skipping = [], False
    for line in path.read_text().split("\n"):
        if line.startswith("["):
            skipping = line.startswith("[guards")
        if not skipping:
            kept.append(line)
    text = "\n".join(kept).rstrip("\n") + "\n\n" + model_toml.render(GUARDS[model]())
    path.write_text(text)
    print(f"wrote the guards of {path}")


if __name__ == "__main__":
    for name in sys.argv[1:] or sorted(GUARDS):
        rewrite(name)
