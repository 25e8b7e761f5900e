"""Retrain every reference model in the store, one after another (`make models`).

.venv/bin/python -m model_store.build.train_all
"""

from __future__ import annotations

import subprocess
import sys

MODULES = (
    "train_scan_classifier",
    "train_scan_segmenter",
    "train_breast_mass",
    "train_notes_classifier",
    "train_vitals_risk",
    "train_ct_nodule_volume",
)


def main() -> None:
    for module in MODULES:
        print(f"== {module}", flush=True)
        # A fresh interpreter each, exactly as when run alone: no thread, RNG or exporter state
        # carries from one model to the next, so each gets the bytes its own run would give.
        subprocess.run([sys.executable, "-m", f"model_store.build.{module}"], check=True)


if __name__ == "__main__":
    main()
