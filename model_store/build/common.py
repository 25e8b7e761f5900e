"""Helpers shared by the training scripts: determinism, ONNX export and check."""

from __future__ import annotations

import hashlib
import random
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

STORE = Path(__file__).resolve().parent.parent  # model_store/


def deterministic(seed: int) -> None:
    """Same seed, same weights, same ONNX bytes: one thread, deterministic kernels, fixed RNGs."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    batch: int,
    learning_rate: float,
) -> torch.nn.Module:
    """Minibatch AdamW with a one-cycle schedule, the loop both image models train with."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    steps = epochs * ((len(inputs) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, learning_rate, total_steps=steps)
    for epoch in range(epochs):
        model.train()
        order, total = torch.randperm(len(inputs)), 0.0
        for start in range(0, len(inputs), batch):
            rows = order[start : start + batch]
            value = loss(model(inputs[rows]), targets[rows])
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            schedule.step()
            total += value.item() * len(rows)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(inputs):.4f}")
    return model.eval()


def quantize8(images: np.ndarray) -> np.ndarray:
    """What a model sees after an 8-bit PNG round trip: round(x * 255) / 255."""
    return (np.round(np.clip(images, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def export_onnx(
    model: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    names: tuple[str, str] = ("image", "probabilities"),
    input_axes: dict[int, str] | None = None,
) -> None:
    """Export with a dynamic batch axis, then fail loudly unless onnxruntime agrees with torch.

    names are the graph's (input, output); input_axes are dynamic input axes beyond the batch,
    e.g. {1: "time"} for series of any length.
    """
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    input_name, output_name = names
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but needs no onnxscript; its output is plain ONNX.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "batch", **(input_axes or {})}, output_name: {0: "batch"}},
        )
    with torch.no_grad():
        expected = model(example).numpy()
    got = run_onnx(path, example.numpy(), names=names)
    error = float(np.abs(got - expected).max())
    if error > 1e-4:
        raise RuntimeError(f"onnxruntime disagrees with torch by {error:.2e}")
    print(f"exported {path} ({path.stat().st_size} bytes), max |onnx - torch| = {error:.1e}")


def onnx_session(path: Path) -> ort.InferenceSession:
    """The exported graph on the CPU provider, as the CPU build of the server runs it."""
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_onnx(
    path: Path, inputs: np.ndarray, batch: int = 64, names: tuple[str, str] = ("image", "probabilities")
) -> np.ndarray:
    """Run the exported graph on inputs of one shape (e.g. (N, 1, H, W) images), in batches."""
    session = onnx_session(path)
    input_name, output_name = names
    outputs = [session.run([output_name], {input_name: inputs[i : i + batch]})[0] for i in range(0, len(inputs), batch)]
    return np.concatenate(outputs)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
