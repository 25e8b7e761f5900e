"""Train the breast_mass reference model: a small MLP on the Wisconsin Diagnostic Breast Cancer set.

Run from the repository root:  .venv/bin/python -m model_store.build.train_breast_mass

Writes model_store/breast_mass/1/model.onnx and model_store/breast_mass/model.toml (sha256 and
held-out accuracy included). Deterministic: same code, same torch, same bytes.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from model_store.build import baselines, common, guards, model_toml
from model_store.build.breast_cancer_data import split

SEED = 0
MODEL_DIR = common.STORE / "breast_mass"
ONNX_PATH = MODEL_DIR / "1" / "model.onnx"
NAMES = ("features", "probabilities")  # the graph's input and output
LABELS = ("benign", "malignant")


class BreastMassMLP(nn.Module):
    """Standardisation with the training mean/std lives in the graph, so callers send raw features."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(mean).float())
        self.register_buffer("std", torch.from_numpy(std).float())
        self.net = nn.Sequential(
            nn.Linear(30, 32),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(32, 16),
            nn.ReLU(),
            nn.Linear(16, 2),
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


def train(X: np.ndarray, y: np.ndarray) -> BreastMassMLP:
    # No feature is constant in this data; the floor only guards the division in the graph.
    model = BreastMassMLP(X.mean(axis=0), np.maximum(X.std(axis=0), 1e-6))
    xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    # lr, weight decay and epochs were picked by 5-fold CV on the training rows only.
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(100):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            loss_fn(model.logits(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def write_model_toml(features: list[str], accuracy: float, n: int) -> None:
    model_toml.write_model_toml(
        MODEL_DIR / "model.toml",
        [
            (None, {"name": "breast_mass", "task": "tabular_classification", "max_batch_size": 64}),
            ("[version_policy]", {"policy": "latest"}),
            ("[[inputs]]", {"name": "features", "datatype": "FP32", "shape": [-1, 30]}),
            ("[[outputs]]", {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}),
            (
                "[preprocessing]",
                {"features": features},
                "Raw (unscaled) values in this order; standardisation is inside the graph.",
            ),
            ("[postprocessing]", {"labels": list(LABELS), "positive_label": "malignant"}),
            ("[versions.1.sha256]", {"model.onnx": common.sha256(ONNX_PATH)}),
            (
                "[card]",
                {
                    "notice": "demonstration model, not for clinical use",
                    "summary": (
                        "Small MLP (30-32-16-2) classifying a breast mass as benign or malignant "
                        "from 30 fine-needle-aspirate nucleus measurements."
                    ),
                    "data": (
                        "Wisconsin Diagnostic Breast Cancer set (real data, 569 samples: 212 "
                        "malignant, 357 benign), as shipped by scikit-learn (load_breast_cancer). "
                        "Stratified 75/25 split, random_state=0; built by "
                        "model_store/build/train_breast_mass.py."
                    ),
                    "intended_use": (
                        "Demonstration and education: a small real tabular model to "
                        "exercise the serving stack. Not for diagnosis."
                    ),
                    "limitations": (
                        "A demonstration model, not for clinical use or diagnosis. 569 "
                        "samples from a single institution in the early 1990s; features "
                        "come from a specific digitised-image measurement protocol and will "
                        "not transfer to other imaging or pathology workflows. Probabilities "
                        "are not calibrated."
                    ),
                },
            ),
            ("[card.metrics]", {"accuracy": accuracy, "heldout_n": n}),
            *baselines.breast_mass(),
            *guards.breast_mass(),
        ],
    )


def main() -> None:
    common.deterministic(SEED)
    started = time.process_time()
    X_train, X_test, y_train, y_test, features = split()
    model = train(X_train, y_train)
    common.export_onnx(model, torch.zeros(1, 30), ONNX_PATH, names=NAMES)

    # The export check saw one all-zero row; hold the graph to torch on every held-out row too.
    onnx_probs = common.run_onnx(ONNX_PATH, X_test, names=NAMES)
    with torch.no_grad():
        np.testing.assert_allclose(onnx_probs, model(torch.from_numpy(X_test)).numpy(), atol=1e-5)

    # The card reports what the served graph does, so score the ONNX output, not torch's.
    accuracy = float((onnx_probs.argmax(axis=1) == y_test).mean())
    assert accuracy >= 0.95, f"held-out accuracy {accuracy:.4f} below 0.95"
    write_model_toml(features, accuracy, len(y_test))
    print(
        f"breast_mass: held-out accuracy {accuracy:.4f} on {len(y_test)}, "
        f"{time.process_time() - started:.1f}s CPU, {ONNX_PATH.stat().st_size} bytes"
    )


if __name__ == "__main__":
    main()
