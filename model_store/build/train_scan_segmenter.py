"""Train the scan_segmenter reference model (a small U-Net) on CT phantoms; write it to the store.

    .venv/bin/python -m model_store.build.train_scan_segmenter

Deterministic: the same code gives the same model.onnx bytes (and so the same sha256).
The model sees HU through its own lung window (-600/1500), whatever window a DICOM file
suggests, and is trained on 8-bit quantized windowed slices, i.e. what a PNG decodes to.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pydicom
import torch
from torch import nn

from model_store.build import common, ct_phantoms, guards, model_toml

MODEL_DIR = common.STORE / "scan_segmenter"
ONNX_PATH = MODEL_DIR / "1" / "model.onnx"
SIZE = 128
WINDOW = (-600.0, 1500.0)  # lung window: center, width
TRAIN_N, TRAIN_SEED = 2000, 1
HELDOUT_N, HELDOUT_SEED = 500, 2  # a different seed, so no slice is shared with training
EPOCHS, BATCH, LEARNING_RATE = 6, 16, 5e-3
MIN_DICE = 0.88


def conv_block(cin: int, cout: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(2):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """Three levels (8-16-32 channels at 128, 64 and 32 pixels) with skip connections.

    Returns logits; the exported graph appends the sigmoid.
    """

    def __init__(self) -> None:
        super().__init__()
        self.down1, self.down2 = conv_block(1, 8), conv_block(8, 16)
        self.bottom = conv_block(16, 32)
        self.up2, self.merge2 = nn.ConvTranspose2d(32, 16, 2, stride=2), conv_block(32, 16)
        self.up1, self.merge1 = nn.ConvTranspose2d(16, 8, 2, stride=2), conv_block(16, 8)
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        full = self.down1(image)
        half = self.down2(nn.functional.max_pool2d(full, 2))
        quarter = self.bottom(nn.functional.max_pool2d(half, 2))
        half = self.merge2(torch.cat([self.up2(quarter), half], dim=1))
        full = self.merge1(torch.cat([self.up1(half), full], dim=1))
        return self.head(full)


def slices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Windowed, 8-bit quantized slices (n, 1, H, W) and their float masks."""
    hu, masks = ct_phantoms.generate(n, seed, SIZE)
    images = common.quantize8(ct_phantoms.window(hu, *WINDOW))
    return images[:, None], masks[:, None].astype(np.float32)


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE for every pixel plus soft Dice over the batch (lesions are a tiny share of pixels)."""
    probabilities = torch.sigmoid(logits)
    overlap = (probabilities * target).sum()
    dice = (2 * overlap + 1.0) / (probabilities.sum() + target.sum() + 1.0)
    return nn.functional.binary_cross_entropy_with_logits(logits, target) + (1.0 - dice)


def train(images: torch.Tensor, masks: torch.Tensor) -> UNet:
    model = UNet()
    common.fit(model, images, masks, dice_bce_loss, epochs=EPOCHS, batch=BATCH, learning_rate=LEARNING_RATE)
    return model


def mean_dice(probabilities: np.ndarray, masks: np.ndarray) -> float:
    """Mean Dice at threshold 0.5 over the slices that have a lesion."""
    predicted = (probabilities >= 0.5).reshape(len(masks), -1)
    truth = (masks >= 0.5).reshape(len(masks), -1)
    has_lesion = truth.any(axis=1)
    overlap = (predicted & truth).sum(axis=1)
    sizes = predicted.sum(axis=1) + truth.sum(axis=1)
    return float((2.0 * overlap[has_lesion] / sizes[has_lesion]).mean())


def dicom_path_dice(n: int = 100, seed: int = 12345) -> float:
    """Dice on slices that went through a DICOM file: stored ints, rescale to HU, lung window."""
    hu, masks = ct_phantoms.generate(n, seed, SIZE)
    decoded = []
    for slice_hu in hu:
        ds = pydicom.dcmread(io.BytesIO(ct_phantoms.to_dicom(slice_hu)))
        decoded.append(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    images = ct_phantoms.window(np.stack(decoded), *WINDOW)[:, None]
    return mean_dice(common.run_onnx(ONNX_PATH, images), masks[:, None])


def write_model_toml(dice: float) -> None:
    model_toml.write_model_toml(
        MODEL_DIR / "model.toml",
        [
            (None, {"name": "scan_segmenter", "task": "image_segmentation", "max_batch_size": 16}),
            ("[version_policy]", {"policy": "latest"}),
            ("[[inputs]]", {"name": "image", "datatype": "FP32", "shape": [-1, 1, SIZE, SIZE]}),
            ("[[outputs]]", {"name": "probabilities", "datatype": "FP32", "shape": [-1, 1, SIZE, SIZE]}),
            (
                "[preprocessing]",
                {
                    "color": "L",
                    "size": [SIZE, SIZE],
                    "mean": [0.0],
                    "std": [1.0],
                    "window": list(WINDOW),
                    "window_source": "model",
                },
            ),
            ("[postprocessing]", {"threshold": 0.5, "label": "lesion"}),
            ("[versions.1.sha256]", {"model.onnx": common.sha256(ONNX_PATH)}),
            (
                "[card]",
                {
                    "notice": "demonstration model, not for clinical use",
                    "summary": "Segments a lung lesion on an axial chest CT slice: per-pixel probability.",
                    "data": (
                        f"Trained on {TRAIN_N} synthetic axial CT phantoms in Hounsfield units "
                        f"(model_store/build/ct_phantoms.py, seed {TRAIN_SEED}), seen through a "
                        "lung window (-600/1500) and quantized to 8 bits; about 10% have no lesion. "
                        "No patient data."
                    ),
                    "intended_use": (
                        "Exercising and testing the medfn serving stack end to end "
                        "(DICOM in HU and PNG inputs, windowing, masks, batching)."
                    ),
                    "limitations": (
                        "demonstration model, not for clinical use. It is trained on "
                        "synthetic phantoms only and has never seen a real CT; its masks on "
                        "real images are meaningless. It always applies its own lung window "
                        "and ignores the window stored in a DICOM file."
                    ),
                    "architecture": "3-level U-Net (8-16-32 channels), sigmoid output",
                    "training_script": "model_store/build/train_scan_segmenter.py",
                },
            ),
            ("[card.metrics]", {"dice": round(dice, 4), "heldout_n": HELDOUT_N, "heldout_seed": HELDOUT_SEED}),
            *guards.scan_segmenter(),
        ],
    )


def main() -> None:
    common.deterministic(0)
    started = time.perf_counter()
    images, masks = (torch.from_numpy(a) for a in slices(TRAIN_N, TRAIN_SEED))
    model = train(images, masks)
    print(f"trained in {time.perf_counter() - started:.0f} s")

    common.export_onnx(nn.Sequential(model, nn.Sigmoid()), images[:2], ONNX_PATH)
    heldout_images, heldout_masks = slices(HELDOUT_N, HELDOUT_SEED)
    dice = mean_dice(common.run_onnx(ONNX_PATH, heldout_images), heldout_masks)
    print(f"held-out Dice (seed {HELDOUT_SEED}, n={HELDOUT_N}, lesion slices): {dice:.4f}")
    if dice < MIN_DICE:
        raise RuntimeError(f"held-out Dice {dice:.4f} is below {MIN_DICE}")
    from_dicom = dicom_path_dice()
    print(f"Dice through DICOM files (seed 12345): {from_dicom:.4f}")
    if from_dicom < MIN_DICE:
        raise RuntimeError("the model does not hold up on DICOM-decoded slices")
    write_model_toml(dice)


if __name__ == "__main__":
    main()
