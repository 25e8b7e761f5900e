"""Train the scan_classifier reference model on chest phantoms and write it to the model store.

    .venv/bin/python -m model_store.build.train_scan_classifier

Deterministic: the same code gives the same model.onnx bytes (and so the same sha256).
Trains on 8-bit quantized phantoms, exactly what a decoded PNG gives, so the served model sees
at inference what it saw in training.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from PIL import Image
from torch import nn

from model_store.build import chest_phantoms, common, guards, model_toml

MODEL_DIR = common.STORE / "scan_classifier"
ONNX_PATH = MODEL_DIR / "1" / "model.onnx"
SIZE = 128
TRAIN_N, TRAIN_SEED = 8000, 1
HELDOUT_N, HELDOUT_SEED = 1000, 2  # a different seed, so no phantom is shared with training
EPOCHS, BATCH, LEARNING_RATE = 9, 32, 3e-3
MIN_ACCURACY = 0.97
SALIENCY = "saliency"  # the class activation maps, an output computed only when asked for


def conv_block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class ScanClassifier(nn.Module):
    """Four 3x3 conv blocks (8-16-32-32), three 2x poolings, global max pooling, linear.

    Max rather than average pooling: one opacity anywhere makes the image positive, and
    averaging over the whole chest dilutes a small blob (it trained slower and to ~0.95).
    Returns logits; the exported graph appends the softmax.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_block(1, 8),
            nn.MaxPool2d(2),
            *conv_block(8, 16),
            nn.MaxPool2d(2),
            *conv_block(16, 32),
            nn.MaxPool2d(2),
            *conv_block(32, 32),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(32, 2)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image))


class WithSaliency(nn.Module):
    """What is exported: the probabilities, and beside them each class's activation map (CAM).

    The head is linear over globally pooled features, so a class's score is its weights times
    the pooled last feature map; the same weights times the map at each place (a 1x1
    convolution, no bias) say where that score comes from. For a linear head this is Grad-CAM
    (the gradient of the score with respect to the map is the weights), at the cost of one
    small convolution. Output "saliency": (N, classes, SIZE / 8, SIZE / 8).
    """

    def __init__(self, model: ScanClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature_map = self.model.features[:-2](image)  # the trunk, before global pooling
        logits = self.model.head(torch.amax(feature_map, dim=(2, 3)))  # as the trained model pools
        saliency = nn.functional.conv2d(feature_map, self.model.head.weight[:, :, None, None])
        return torch.softmax(logits, dim=1), saliency


def export_with_saliency(model: ScanClassifier, example: torch.Tensor) -> None:
    """Both outputs with a dynamic batch axis; fails loudly unless onnxruntime agrees with torch."""
    served = WithSaliency(model).eval()
    ONNX_PATH.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # as common.export_onnx: plain ONNX, no onnxscript
        torch.onnx.export(
            served,
            (example,),
            str(ONNX_PATH),
            opset_version=17,
            dynamo=False,
            input_names=["image"],
            output_names=["probabilities", SALIENCY],
            dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}, SALIENCY: {0: "batch"}},
        )
    with torch.no_grad():
        expected = [t.numpy() for t in served(example)]
        plain = nn.functional.softmax(model(example), dim=1).numpy()
    got = common.onnx_session(ONNX_PATH).run(["probabilities", SALIENCY], {"image": example.numpy()})
    error = max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))
    error = max(error, float(np.abs(got[0] - plain).max()))
    if error > 1e-4:
        raise RuntimeError(f"onnxruntime disagrees with torch by {error:.2e}")
    print(f"exported {ONNX_PATH} ({ONNX_PATH.stat().st_size} bytes), max |onnx - torch| = {error:.1e}")


def phantoms(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = chest_phantoms.generate(n, seed, SIZE)
    return torch.from_numpy(common.quantize8(images)[:, None]), torch.from_numpy(labels)


def train(images: torch.Tensor, labels: torch.Tensor) -> ScanClassifier:
    model = ScanClassifier()
    common.fit(
        model, images, labels, nn.functional.cross_entropy, epochs=EPOCHS, batch=BATCH, learning_rate=LEARNING_RATE
    )
    return model


def onnx_accuracy(images: np.ndarray, labels: np.ndarray) -> float:
    probabilities = common.run_onnx(ONNX_PATH, images)
    return float((probabilities.argmax(1) == labels).mean())


def robustness_checks() -> None:
    """A seed the model never saw, and phantoms drawn at 256 then resized as a server would."""
    images, labels = chest_phantoms.generate(500, 12345, SIZE)
    fresh = onnx_accuracy(common.quantize8(images)[:, None], labels)
    big, big_labels = chest_phantoms.generate(500, 12345, 2 * SIZE)
    resized = np.stack([np.asarray(Image.fromarray(img).resize((SIZE, SIZE), Image.BILINEAR)) for img in big])
    scaled = onnx_accuracy(resized.astype(np.float32)[:, None], big_labels)
    print(f"accuracy on seed 12345: {fresh:.4f}; drawn at 256, resized to 128: {scaled:.4f}")
    if min(fresh, scaled) < 0.95:
        raise RuntimeError("the model is not robust enough for the tests")


def write_model_toml(accuracy: float) -> None:
    model_toml.write_model_toml(
        MODEL_DIR / "model.toml",
        [
            (None, {"name": "scan_classifier", "task": "image_classification", "max_batch_size": 32}),
            ("[version_policy]", {"policy": "latest"}),
            ("[[inputs]]", {"name": "image", "datatype": "FP32", "shape": [-1, 1, SIZE, SIZE]}),
            ("[[outputs]]", {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}),
            ("[[outputs]]", {"name": SALIENCY, "datatype": "FP32", "shape": [-1, 2, SIZE // 8, SIZE // 8]}),
            (
                "[preprocessing]",
                {"color": "L", "size": [SIZE, SIZE], "mean": [0.0], "std": [1.0], "window_source": "file"},
            ),
            ("[postprocessing]", {"labels": list(chest_phantoms.LABELS)}),
            (
                "[explain]",
                {"output": SALIENCY},
                "Explained by grad-cam: the class activation maps (the head's weights times the last\n"
                'feature map), computed only when asked for: by /explain, or by naming "saliency" in an\n'
                "/infer request's outputs.",
            ),
            ("[versions.1.sha256]", {"model.onnx": common.sha256(ONNX_PATH)}),
            (
                "[card]",
                {
                    "notice": "demonstration model, not for clinical use",
                    "summary": "Flags a focal lung opacity on a frontal chest radiograph.",
                    "data": (
                        f"Trained on {TRAIN_N} synthetic chest radiograph phantoms "
                        f"(model_store/build/chest_phantoms.py, seed {TRAIN_SEED}), quantized to "
                        "8 bits; balanced classes. No patient data."
                    ),
                    "intended_use": (
                        "Exercising and testing the medfn serving stack end to end "
                        "(PNG, JPEG and DICOM inputs, batching, model cards)."
                    ),
                    "limitations": (
                        "demonstration model, not for clinical use. It is trained on "
                        "synthetic phantoms only and has never seen a real radiograph; its "
                        "outputs on real images are meaningless."
                    ),
                    "architecture": (
                        "4-block CNN (8-16-32-32 channels), global max pooling, softmax; "
                        "class activation maps as a second output"
                    ),
                    "training_script": "model_store/build/train_scan_classifier.py",
                },
            ),
            ("[card.metrics]", {"accuracy": round(accuracy, 4), "heldout_n": HELDOUT_N, "heldout_seed": HELDOUT_SEED}),
            *guards.scan_classifier(),
        ],
    )


def main() -> None:
    common.deterministic(0)
    started = time.perf_counter()
    train_images, train_labels = phantoms(TRAIN_N, TRAIN_SEED)
    model = train(train_images, train_labels)
    print(f"trained in {time.perf_counter() - started:.0f} s")

    export_with_saliency(model, train_images[:4])
    heldout_images, heldout_labels = phantoms(HELDOUT_N, HELDOUT_SEED)
    accuracy = onnx_accuracy(heldout_images.numpy(), heldout_labels.numpy())
    print(f"held-out accuracy (seed {HELDOUT_SEED}, n={HELDOUT_N}): {accuracy:.4f}")
    if accuracy < MIN_ACCURACY:
        raise RuntimeError(f"held-out accuracy {accuracy:.4f} is below {MIN_ACCURACY}")
    robustness_checks()
    write_model_toml(accuracy)


if __name__ == "__main__":
    main()
