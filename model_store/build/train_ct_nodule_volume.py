"""Train the ct_nodule_volume reference model (a 2.5D U-Net) on CT phantom series; write it to the store.

    .venv/bin/python -m model_store.build.train_ct_nodule_volume

The model reads each slice with its neighbours 6 and 3 mm above and below it (five channels),
on a 1.25 mm in-plane grid, through a -1000..400 HU window, and gives each pixel its
probability of lying in a nodule. What it reads is made by the serving code itself
(medfn.tasks.volume_segmentation: model_grid, context_stack, resample_slices), so training and
serving cannot drift. It trains on patches: most about a nodule, the rest drawn from the whole
body, a share of them on bright structures in the lung (vessels), which look most like one.

The held-out figures come from whole series of another seed, run through the served model
(load_models, VolumeSegmenter.predict): Dice of the label map, and each nodule's volume error.
Deterministic: the same code gives the same model.onnx bytes (and so the same sha256).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medfn.tasks.volume_segmentation import context_stack, model_grid, resample_slices
from model_store.build import common, ct_series_phantoms, model_toml
from model_store.build.ct_series_phantoms import Series

MODEL = "ct_nodule_volume"
MODEL_DIR = common.STORE / MODEL
ONNX_PATH = MODEL_DIR / "1" / "model.onnx"
PIXEL_SPACING_MM = 1.25  # the model's in-plane grid
WINDOW = (-300.0, 1400.0)  # center, width: -1000 to 400 HU
CONTEXT_MM = [-6.0, -3.0, 0.0, 3.0, 6.0]
MIN_SLICES = 5
THRESHOLD, MIN_VOLUME_MM3 = 0.5, 30.0
MAX_BATCH = 8  # slices a run: bounds the activations' memory
CHANNELS = (8, 16, 32, 64)
PATCH = 64  # pixels a side, on the model's grid (80 mm)
TRAIN_N, TRAIN_SEED = 360, 1
POSITIVE_PATCHES, NEGATIVE_PATCHES = 14, 10  # a series
HELDOUT_N, HELDOUT_SEED = 16, 2  # whole series of another seed: no voxel shared with training
EPOCHS, BATCH, LEARNING_RATE = 9, 32, 4e-3
MIN_DICE, MAX_MEDIAN_VOLUME_ERROR = 0.85, 0.15


def conv_block(cin: int, cout: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(2):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*layers)


class UNet25D(nn.Module):
    """Four levels (8-16-32-64 channels at 1, 1/2, 1/4, 1/8 of the grid) with skip connections;
    the context slices are its input channels. Upsampling goes to each skip's own size, so any
    height and width run (no padding to a multiple of 8). Returns logits; the export appends the
    sigmoid."""

    def __init__(self, context: int = len(CONTEXT_MM), channels: tuple[int, ...] = CHANNELS) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        width = context
        for out in channels:
            self.down.append(conv_block(width, out))
            width = out
        self.reduce, self.merge = nn.ModuleList(), nn.ModuleList()
        for out in reversed(channels[:-1]):
            self.reduce.append(nn.Conv2d(width, out, 1))
            self.merge.append(conv_block(2 * out, out))
            width = out
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, slices: torch.Tensor) -> torch.Tensor:
        skips = []
        x = slices
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for reduce, merge in zip(self.reduce, self.merge, strict=True):
            skip = skips.pop()
            x = nn.functional.interpolate(reduce(x), size=skip.shape[-2:], mode="nearest")
            x = merge(torch.cat([x, skip], dim=1))
        return self.head(x)


# -- data ----------------------------------------------------------------------------------------


def training_grid(index: int) -> dict[str, Any]:
    """Series `index`'s scanner settings: pixel spacing, matrix and slab, from its own stream."""
    rng = np.random.default_rng((TRAIN_SEED, index, 1))
    spacing = float(rng.uniform(0.6, 1.3))
    matrix = int(min(512, round(rng.uniform(330.0, 380.0) / spacing)))
    dz = float(rng.choice(ct_series_phantoms.SLICE_SPACINGS_MM))
    slab = rng.uniform(50.0, 100.0)
    return dict(
        rows=matrix,
        cols=matrix,
        pixel_spacing=(spacing, spacing),
        slice_spacing=dz,
        slices=max(MIN_SLICES, int(slab / dz)),
        slab_at=None if rng.uniform() < 0.8 else float(rng.uniform(-0.1, 1.1)),
    )


def series_patches(series: Series, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Context stacks (n, C, PATCH, PATCH) and soft targets (n, PATCH, PATCH) from one series."""
    dz, row_mm, col_mm = series.spacing_mm
    grid = model_grid(series.hu, (row_mm, col_mm), PIXEL_SPACING_MM, WINDOW)
    target = resample_slices((series.labels > 0).astype(np.float32), grid.shape[1:])
    slices, height, width = grid.shape
    half = PATCH // 2
    centres: list[tuple[int, int, int]] = []
    positive = np.argwhere(target > 0.5)
    if len(positive):
        for k, r, c in positive[rng.integers(len(positive), size=POSITIVE_PATCHES)]:
            centres.append((int(k), int(r + rng.integers(-20, 21)), int(c + rng.integers(-20, 21))))
    # Bright pixels beside dark lung: vessels, the chest wall, the heart's edge.
    bright = np.argwhere(
        (grid > 0.4) & (np.roll(grid, 3, axis=2) < 0.2) | (grid > 0.4) & (np.roll(grid, 3, axis=1) < 0.2)
    )
    for n in range(NEGATIVE_PATCHES + POSITIVE_PATCHES - len(centres)):
        if len(bright) and n % 2 == 0:
            k, r, c = bright[rng.integers(len(bright))]
        else:
            k, r, c = rng.integers(slices), rng.integers(height), rng.integers(width)
        centres.append((int(k), int(r), int(c)))
    images, targets = [], []
    for k, r, c in centres:
        r0 = int(np.clip(r - half, 0, max(height - PATCH, 0)))
        c0 = int(np.clip(c - half, 0, max(width - PATCH, 0)))
        crop = grid[:, r0 : r0 + PATCH, c0 : c0 + PATCH]
        images.append(context_stack(crop, dz, CONTEXT_MM, np.array([k]))[0])
        targets.append(target[k, r0 : r0 + PATCH, c0 : c0 + PATCH])
    return np.stack(images).astype(np.float16), np.stack(targets).astype(np.float16)


def training_set() -> tuple[np.ndarray, np.ndarray]:
    images, targets = [], []
    for index in range(TRAIN_N):
        series = ct_series_phantoms.generate(TRAIN_SEED, index, **training_grid(index))
        x, y = series_patches(series, np.random.default_rng((TRAIN_SEED, index, 2)))
        images.append(x)
        targets.append(y)
    return np.concatenate(images), np.concatenate(targets)


# -- training ------------------------------------------------------------------------------------


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE on every pixel (soft targets: partial volume) plus soft Dice over the batch."""
    probabilities = torch.sigmoid(logits)
    overlap = (probabilities * target).sum()
    dice = (2 * overlap + 1.0) / (probabilities.sum() + target.sum() + 1.0)
    return nn.functional.binary_cross_entropy_with_logits(logits, target) + (1.0 - dice)


def augment(images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Mirror left-right, front-back and head-feet (the context's order), each half the time."""
    flips = torch.rand(3, generator=generator) < 0.5
    for flip, image_dims, target_dims in ((flips[0], [3], [3]), (flips[1], [2], [2]), (flips[2], [1], [])):
        if flip:
            images = images.flip(image_dims)
            targets = targets.flip(target_dims) if target_dims else targets
    return images, targets


def train(images: np.ndarray, targets: np.ndarray) -> UNet25D:
    """Minibatch AdamW with a one-cycle schedule over float16-stored patches."""
    model = UNet25D()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    steps = EPOCHS * ((len(images) + BATCH - 1) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=steps)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(EPOCHS):
        model.train()
        order, total = torch.randperm(len(images), generator=generator).numpy(), 0.0
        for start in range(0, len(images), BATCH):
            rows = np.sort(order[start : start + BATCH])
            x = torch.from_numpy(images[rows].astype(np.float32))
            y = torch.from_numpy(targets[rows].astype(np.float32))[:, None]
            x, y = augment(x, y, generator)
            value = dice_bce_loss(model(x), y)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            schedule.step()
            total += value.item() * len(rows)
        print(f"epoch {epoch + 1}/{EPOCHS}: loss {total / len(images):.4f}", flush=True)
    return model.eval()


def export(model: nn.Module, path: Path) -> None:
    """ONNX with the batch, height and width free; fails loudly unless onnxruntime agrees with torch
    (at a size that is no multiple of 8, too)."""
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, its output plain ONNX
        torch.onnx.export(
            model,
            (torch.zeros(2, len(CONTEXT_MM), PATCH, PATCH),),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=["slices"],
            output_names=["probabilities"],
            dynamic_axes={"slices": axes, "probabilities": axes},
        )
    error = 0.0
    for shape in ((2, len(CONTEXT_MM), PATCH, PATCH), (3, len(CONTEXT_MM), 75, 98)):
        example = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = model(example).numpy()
        got = common.run_onnx(path, example.numpy(), names=("slices", "probabilities"))
        error = max(error, float(np.abs(got - expected).max()))
    if error > 1e-4:
        raise RuntimeError(f"onnxruntime disagrees with torch by {error:.2e}")
    print(f"exported {path} ({path.stat().st_size} bytes), max |onnx - torch| = {error:.1e}")


# -- held-out ------------------------------------------------------------------------------------


def heldout_grid(index: int) -> dict[str, Any]:
    """Whole series as scanners make them: 0.6-0.9 mm pixels over the chest, any slice spacing."""
    rng = np.random.default_rng((HELDOUT_SEED, index, 1))
    spacing = float(rng.uniform(0.6, 0.9))
    matrix = int(min(512, round(rng.uniform(330.0, 380.0) / spacing)))
    return dict(rows=matrix, cols=matrix, pixel_spacing=(spacing, spacing))


def evaluate(model: Any, series: Iterable[Series]) -> dict[str, float]:
    """Through the served model: Dice of each series' label map (those with a nodule), each
    nodule's relative volume error against the mask's component that overlaps it most (a missed
    one counts 1), the share of nodules found, and components that overlap no nodule."""
    from scipy import ndimage

    from medfn.serving import Payload

    dices, errors, found, false_findings, nodules, count_series = [], [], 0, 0, 0, 0
    for one in series:
        nodules, count_series = nodules + len(one.nodules), count_series + 1
        prediction = model.predict(Payload(b"", "application/dicom", volume=ct_series_phantoms.volume(one)))
        mask, truth = prediction.mask > 0, one.labels > 0
        if truth.any():
            dices.append(2 * (mask & truth).sum() / (mask.sum() + truth.sum()))
        components, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
        assert count == len(prediction.details["findings"]), "a finding for each component of the mask"
        sizes = np.bincount(components.ravel(), minlength=count + 1)
        voxel_ml = float(np.prod(one.spacing_mm)) / 1000.0
        matched = set()
        for nodule in one.nodules:
            overlap = np.bincount(components[one.labels == nodule.label], minlength=count + 1)[1:]
            if overlap.max(initial=0) == 0:
                errors.append(1.0)
                continue
            k = int(np.argmax(overlap)) + 1
            matched.add(k)
            found += 1
            errors.append(abs(sizes[k] * voxel_ml - nodule.volume_ml) / nodule.volume_ml)
        false_findings += count - len(matched)
    return {
        "dice": float(np.mean(dices)),
        "median_volume_error": float(np.median(errors)),
        "sensitivity": found / max(nodules, 1),
        "false_findings_per_series": false_findings / count_series,
        "nodules": nodules,
    }


def heldout_series() -> Iterator[Series]:
    """One at a time: a whole series at 0.6 mm is up to 1.5 GB with its labels."""
    return (ct_series_phantoms.generate(HELDOUT_SEED, i, **heldout_grid(i)) for i in range(HELDOUT_N))


# -- model.toml ----------------------------------------------------------------------------------


def write_model_toml(metrics: dict[str, float] | None) -> None:
    card_metrics = (
        {
            "dice": round(metrics["dice"], 4),
            "median_volume_error": round(metrics["median_volume_error"], 4),
            "sensitivity": round(metrics["sensitivity"], 4),
            "false_findings_per_series": round(metrics["false_findings_per_series"], 3),
            "heldout_nodules": int(metrics["nodules"]),
            "heldout_n": HELDOUT_N,
            "heldout_seed": HELDOUT_SEED,
        }
        if metrics
        else {"heldout_n": 0}
    )
    model_toml.write_model_toml(
        MODEL_DIR / "model.toml",
        [
            (None, {"name": MODEL, "task": "volume_segmentation", "max_batch_size": MAX_BATCH}),
            ("[version_policy]", {"policy": "latest"}),
            ("[[inputs]]", {"name": "slices", "datatype": "FP32", "shape": [-1, len(CONTEXT_MM), -1, -1]}),
            ("[[outputs]]", {"name": "probabilities", "datatype": "FP32", "shape": [-1, 1, -1, -1]}),
            (
                "[preprocessing]",
                {
                    "pixel_spacing_mm": PIXEL_SPACING_MM,
                    "window": list(WINDOW),
                    "context_mm": CONTEXT_MM,
                    "min_slices": MIN_SLICES,
                    "slice_spacing_mm": [
                        min(ct_series_phantoms.SLICE_SPACINGS_MM),
                        max(ct_series_phantoms.SLICE_SPACINGS_MM),
                    ],
                },
                "Each slice is resampled in-plane to 1.25 mm (area mean; bilinear where the series is coarser),\n"
                "windowed to 0-1 over -1000..400 HU, and read with its neighbours at context_mm along the normal\n"
                "(interpolated between slices): input [slices, 5, H, W], any H and W of at least 16.",
            ),
            ("[postprocessing]", {"threshold": THRESHOLD, "min_volume_mm3": MIN_VOLUME_MM3, "label": "nodule"}),
            ("[versions.1.sha256]", {"model.onnx": common.sha256(ONNX_PATH)}),
            (
                "[card]",
                {
                    "notice": "demonstration model, not for clinical use",
                    "summary": (
                        "Segments lung nodules on a CT series: a label map on the series' own grid, and per"
                        " nodule its volume, longest axial diameter, slices and centroid."
                    ),
                    "data": (
                        f"Trained on patches of {TRAIN_N} synthetic chest CT phantom series in Hounsfield units "
                        f"(model_store/build/ct_series_phantoms.py, seed {TRAIN_SEED}): 0.6-1.3 mm pixels, "
                        "1-5 mm slices, 0-3 nodules of 5-30 mm (spheres and lobulated ellipsoids, -50..60 HU) "
                        "among vessels 1.2-3.5 mm across. Held-out figures: whole series of seed "
                        f"{HELDOUT_SEED} through the served model. No patient data."
                    ),
                    "intended_use": (
                        "Exercising and testing the medfn series pipeline end to end (DICOM series to volume, "
                        "chunked inference, label map, SEG and SR results)."
                    ),
                    "limitations": (
                        "demonstration model, not for clinical use. It is trained on synthetic phantoms only and "
                        "has never seen a real CT: its findings on real scans are meaningless. It knows solid "
                        "nodules inside the lung, not ground-glass, juxtapleural or calcified ones; below 1.25 mm "
                        "it sees nothing finer than its grid, and slices thicker than 5 mm lie outside its data."
                    ),
                    "architecture": "2.5D U-Net, 4 levels (8-16-32-64 channels), 5 context slices in, sigmoid out",
                    "training_script": "model_store/build/train_ct_nodule_volume.py",
                },
            ),
            ("[card.metrics]", card_metrics),
        ],
    )


def main() -> None:
    common.deterministic(0)
    started = time.perf_counter()
    images, targets = training_set()
    print(f"{len(images)} patches from {TRAIN_N} series in {time.perf_counter() - started:.0f} s", flush=True)
    model = train(images, targets)
    print(f"trained in {time.perf_counter() - started:.0f} s", flush=True)
    export(nn.Sequential(model, nn.Sigmoid()), ONNX_PATH)
    write_model_toml(None)  # served as it will be, to measure it: the card's figures come next

    from medfn.function import load_models
    from medfn.serving import LocalStore

    (served,) = load_models(LocalStore(common.STORE), MODEL, memory_mb=10240)
    if not served.ready:
        raise RuntimeError(f"the exported model does not load: {served.reason}")
    metrics = evaluate(served, heldout_series())
    print(
        f"held-out (seed {HELDOUT_SEED}, {HELDOUT_N} series, {metrics['nodules']} nodules): "
        f"Dice {metrics['dice']:.4f}, median volume error {metrics['median_volume_error']:.3f}, "
        f"sensitivity {metrics['sensitivity']:.3f}, false findings a series {metrics['false_findings_per_series']:.2f}"
        f" ({time.perf_counter() - started:.0f} s in all)"
    )
    if metrics["dice"] < MIN_DICE or metrics["median_volume_error"] > MAX_MEDIAN_VOLUME_ERROR:
        raise RuntimeError(f"held-out figures below the floor: {metrics}")
    write_model_toml(metrics)


if __name__ == "__main__":
    main()
