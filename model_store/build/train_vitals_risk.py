"""Train the vitals_risk reference model: a small Transformer encoder over hourly vital signs.

Run from the repository root:  .venv/bin/python -m model_store.build.train_vitals_risk

It predicts whether NEWS2 will be 5 or more four hours after the last observation
(see vitals_series.py). Writes model_store/vitals_risk/1/model.onnx and
model_store/vitals_risk/model.toml (sha256 and held-out AUROC included).
Deterministic: same code, same torch, same bytes.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict

import numpy as np
import onnxruntime as ort
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from model_store.build import baselines, common, guards, model_toml, vitals_series
from model_store.build.vitals_series import HELDOUT_N, HELDOUT_SEED, TRAIN_N, TRAIN_SEED, VAL_N, VAL_SEED

EPOCHS = 12
MAX_POSITIONS = 64  # learned positions; the runtime refuses series longer than max_length = 48
MODEL_DIR = common.STORE / "vitals_risk"
ONNX_PATH = MODEL_DIR / "1" / "model.onnx"


class EncoderLayer(nn.Module):
    """A post-norm Transformer encoder layer, as nn.TransformerEncoderLayer computes it.

    Written out because the legacy ONNX exporter bakes the traced sequence length into
    nn.MultiheadAttention's reshapes; these keep the time axis symbolic.
    """

    def __init__(self, d_model: int, heads: int, feedforward: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.feedforward = nn.Sequential(
            nn.Linear(d_model, feedforward), nn.ReLU(), nn.Dropout(dropout), nn.Linear(feedforward, d_model)
        )
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        # (batch, time, 3 * d) -> three of (batch, heads, time, d / heads)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        return self.out((self.dropout(weights) @ v).transpose(1, 2).flatten(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attention(x)))
        return self.norm2(x + self.dropout(self.feedforward(x)))


class VitalsTransformer(nn.Module):
    """Normalise (training mean/std, in the graph), embed, add a learned position, two
    self-attention layers, mean over time, sigmoid. No padding mask: every call sees whole
    series of one length, in training (batches are grouped by length) as in serving."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, d_model: int = 32) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(mean).float())
        self.register_buffer("std", torch.from_numpy(std).float())
        self.embed = nn.Linear(len(vitals_series.FEATURES), d_model)
        self.position = nn.Embedding(MAX_POSITIONS, d_model)
        self.encoder = nn.Sequential(*(EncoderLayer(d_model, heads=4, feedforward=64, dropout=0.1) for _ in range(2)))
        self.head = nn.Linear(d_model, 1)

    def logit(self, vitals: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(vitals.shape[1], device=vitals.device)
        h = self.embed((vitals - self.mean) / self.std) + self.position(positions)
        return self.head(self.encoder(h).mean(dim=1))

    def forward(self, vitals: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(vitals))


def by_length(series: list[np.ndarray], batch: int, gen: torch.Generator) -> list[list[int]]:
    """Indices in shuffled batches of equal-length series, so no batch needs padding."""
    groups = defaultdict(list)
    for i in torch.randperm(len(series), generator=gen).tolist():
        groups[len(series[i])].append(i)
    batches = [g[j : j + batch] for _, g in sorted(groups.items()) for j in range(0, len(g), batch)]
    return [batches[k] for k in torch.randperm(len(batches), generator=gen).tolist()]


def predict(model: VitalsTransformer, series: list[np.ndarray]) -> np.ndarray:
    model.eval()
    out = np.zeros(len(series), dtype=np.float32)
    with torch.no_grad():
        for idx in by_length(series, 512, torch.Generator().manual_seed(0)):
            out[idx] = model(torch.from_numpy(np.stack([series[i] for i in idx])))[:, 0].numpy()
    return out


def train(
    series: list[np.ndarray], labels: np.ndarray, val_series: list[np.ndarray], val_labels: np.ndarray
) -> VitalsTransformer:
    rows = np.concatenate(series)
    # consciousness is 0/1 and rarely 1: floor its std so a rare 1 does not become a huge input.
    model = VitalsTransformer(rows.mean(axis=0), np.maximum(rows.std(axis=0), 0.1))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    gen = torch.Generator().manual_seed(TRAIN_SEED)
    y = torch.from_numpy(labels).float()
    best, best_state = -1.0, None
    for epoch in range(EPOCHS):
        model.train()
        for idx in by_length(series, 64, gen):
            opt.zero_grad()
            logit = model.logit(torch.from_numpy(np.stack([series[i] for i in idx])))[:, 0]
            nn.functional.binary_cross_entropy_with_logits(logit, y[idx]).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        sched.step()
        auroc = roc_auc_score(val_labels, predict(model, val_series))
        print(f"  epoch {epoch + 1}: validation AUROC {auroc:.4f}")
        if auroc > best:  # keep the epoch that generalised best, judged on the validation draw only
            best, best_state = auroc, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model.eval()


def check_onnx(session: ort.InferenceSession, model: VitalsTransformer, series: list[np.ndarray]) -> None:
    """ONNX matches torch at the lengths the runtime may send, 1 to max_length."""
    long = next(s for s in series if len(s) == 48)
    for length in (1, 6, 17, 48):
        x = long[None, :length]
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(session.run(["risk"], {"vitals": x})[0], expected, atol=1e-5)


def write_model_toml(auroc: float, prevalence: float) -> None:
    model_toml.write_model_toml(
        MODEL_DIR / "model.toml",
        [
            (
                None,
                {"name": "vitals_risk", "task": "timeseries_risk", "max_batch_size": 1},
                "max_batch_size is 1: the graph has a batch axis, but series differ in length and it\n"
                "takes no padding mask, so the runtime sends one whole series per request.",
            ),
            ("[version_policy]", {"policy": "latest"}),
            ("[[inputs]]", {"name": "vitals", "datatype": "FP32", "shape": [-1, -1, len(vitals_series.FEATURES)]}),
            ("[[outputs]]", {"name": "risk", "datatype": "FP32", "shape": [-1, 1]}),
            (
                "[preprocessing]",
                {"features": vitals_series.FEATURES, "max_length": 48, "min_length": 1},
                "One row per hourly observation, oldest first, columns in this order, raw units\n"
                "(beats/min, breaths/min, %, mmHg, degrees C, 0 alert / 1 not alert); normalisation is "
                "in the graph.",
            ),
            (
                "[preprocessing.ranges]",
                {
                    "heart_rate": [20, 250],
                    "respiratory_rate": [0, 80],
                    "spo2": [50, 100],
                    "systolic_bp": [40, 300],
                    "temperature": [30, 45],
                    "consciousness": [0, 1],
                },
                "Plausible values; anything outside is refused (422).",
            ),
            (
                "[preprocessing.categories.consciousness]",
                {"A": 0, "C": 1, "V": 1, "P": 1, "U": 1},
                "ACVPU letters also accepted: alert 0, any other level 1.",
            ),
            (
                "[postprocessing]",
                {
                    "bands": [[0.0, "low"], [0.3, "medium"], [0.6, "high"]],
                    "labels": ["stable", "deteriorating"],
                    "news2": True,
                },
                "bands: lower bounds of risk; the answer's label is the band the risk reaches.\n"
                "labels: the two outcomes the probabilities name (NEWS2 >= 5 in 4 h or not).\n"
                "news2: the latest observation's NEWS2 (medfn.tasks.news2) comes back beside the risk.",
            ),
            ("[versions.1.sha256]", {"model.onnx": common.sha256(ONNX_PATH)}),
            (
                "[card]",
                {
                    "notice": "demonstration model, not for clinical use",
                    "summary": (
                        "Transformer encoder (2 layers, d_model 32, 4 heads) over up to 48 hourly "
                        "vital-sign observations; outputs the probability that NEWS2 reaches 5 or "
                        "more four hours after the last observation."
                    ),
                    "data": (
                        "Synthetic patients (model_store/build/vitals_series.py): stable, "
                        "deteriorating (sepsis, respiratory, bleeding, neurological; varied onset and "
                        "speed) and recovering courses with autocorrelated noise; label from NEWS2 "
                        "(medfn.tasks.news2, room air) of the observation 4 h ahead, positive in "
                        f"{prevalence:.0%}. Trained on {TRAIN_N} series (seed {TRAIN_SEED}), epoch "
                        f"chosen on {VAL_N} (seed {VAL_SEED}), scored on {HELDOUT_N} "
                        f"(seed {HELDOUT_SEED})."
                    ),
                    "intended_use": (
                        "Demonstration of serving a sequence model with input validation. Not an early-warning system."
                    ),
                    "limitations": (
                        "demonstration model, not for clinical use. Patients, courses and noise "
                        "are simulated; the label is a NEWS2 threshold, itself only a screening "
                        "aid. Assumes room air and SpO2 scale 1, knows nothing of treatment, and "
                        "was trained on 6 to 48 hourly observations only."
                    ),
                },
            ),
            ("[card.metrics]", {"auroc": auroc, "heldout_n": HELDOUT_N}),
            *baselines.vitals_risk(),
            *guards.vitals_risk(),
        ],
    )


def main() -> None:
    common.deterministic(TRAIN_SEED)
    started = time.process_time()
    series, labels = vitals_series.generate(TRAIN_N, TRAIN_SEED)
    val_series, val_labels = vitals_series.generate(VAL_N, VAL_SEED)
    heldout_series, heldout_labels = vitals_series.generate(HELDOUT_N, HELDOUT_SEED)
    model = train(series, labels, val_series, val_labels)

    common.export_onnx(
        model,
        torch.zeros(1, 17, len(vitals_series.FEATURES)),
        ONNX_PATH,
        names=("vitals", "risk"),
        input_axes={1: "time"},
    )
    session = common.onnx_session(ONNX_PATH)
    check_onnx(session, model, heldout_series)

    # Score the served graph one series per call, as the runtime calls it.
    risk = np.array([session.run(["risk"], {"vitals": s[None]})[0][0, 0] for s in heldout_series])
    auroc = float(roc_auc_score(heldout_labels, risk))
    assert auroc >= 0.85, f"held-out AUROC {auroc:.4f} below 0.85"
    write_model_toml(auroc, float(labels.mean()))
    print(
        f"vitals_risk: held-out AUROC {auroc:.4f} on {HELDOUT_N} (prevalence {heldout_labels.mean():.3f}), "
        f"{time.process_time() - started:.1f}s CPU, {ONNX_PATH.stat().st_size} bytes"
    )


if __name__ == "__main__":
    main()
