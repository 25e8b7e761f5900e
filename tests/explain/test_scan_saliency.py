"""The scan classifier's maps, held against where the phantoms' nodules really are (fresh seed).

Pointing game: the map's largest value lies on the nodule (dilated by a few pixels). Deletion:
hiding the 10% most salient pixels lowers the opacity probability more than hiding a random 10%.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from medfn.explain.maps import upsample
from medfn.serving import Model, Payload
from model_store.build import chest_phantoms
from tests.explain.conftest import near

DILATION_PX = 4  # at 128 pixels across, 1.6% of the image: the nodules are 3 to 10 pixels in radius
OPACITY = chest_phantoms.LABELS.index("opacity")


def explain(model: Model, image: np.ndarray) -> tuple[str, str, np.ndarray]:
    explanation = model.explain(Payload(chest_phantoms.to_png(image), "image/png"))
    return explanation.prediction.label or "", explanation.method, np.asarray(explanation.details["map"])


def pointing_rate(model: Model, images: np.ndarray, masks: np.ndarray, dilation: float) -> tuple[float, str]:
    hits, method = 0, ""
    for image, mask in zip(images, masks, strict=True):
        _, method, values = explain(model, image)
        heat = upsample(values, *mask.shape)
        row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
        hits += near(mask, int(row), int(col), dilation)
    return hits / len(images), method


def test_pointing_game_class_activation_maps(classifier: Model, opacities) -> None:  # type: ignore[no-untyped-def]
    images, masks = opacities
    rate, method = pointing_rate(classifier, images, masks, DILATION_PX)
    print(f"grad-cam pointing game: {rate:.3f} of {len(images)}")
    assert method == "grad-cam"
    assert rate >= 0.9


def test_pointing_game_on_a_larger_scan(classifier: Model) -> None:
    """Drawn at 256 and averaged down to the model's 128: the map comes back onto the 256 grid."""
    images, labels, masks = chest_phantoms.generate_with_masks(40, 97531, 256)
    images, masks = images[labels == 1], masks[labels == 1]
    rate, _ = pointing_rate(classifier, images, masks, 2 * DILATION_PX)
    print(f"grad-cam pointing game at 256: {rate:.3f} of {len(images)}")
    assert rate >= 0.9


def test_occlusion_finds_the_nodule_within_its_grid(occluding_classifier: Model, opacities) -> None:  # type: ignore[no-untyped-def]
    """Occlusion is only as fine as its grid (16 pixels a cell here): the largest cell holds
    some of the nodule, dilated by the same few pixels."""
    images, masks = opacities
    hits = 0
    for image, mask in zip(images[:40], masks[:40], strict=True):
        _, method, values = explain(occluding_classifier, image)
        assert method == "occlusion" and values.shape == (8, 8)
        row, col = np.unravel_index(int(np.argmax(values)), values.shape)
        cell = np.zeros_like(mask)
        cell[row * 16 : (row + 1) * 16, col * 16 : (col + 1) * 16] = True
        hits += bool((cell & _dilated(mask, DILATION_PX)).any())
    print(f"occlusion: largest cell on the nodule in {hits} of 40")
    assert hits >= 36


def test_deletion_of_the_salient_pixels(classifier: Model, opacities) -> None:  # type: ignore[no-untyped-def]
    images, _ = opacities
    rng = np.random.default_rng(13)
    count = images[0].size // 10
    salient, random = [], []
    for image in images:
        label, _, values = explain(classifier, image)
        heat = upsample(values, *image.shape)
        blurred = _blurred(image)
        top = np.argsort(heat, axis=None)[-count:]
        chosen = rng.choice(image.size, count, replace=False)
        for pixels, into in ((top, salient), (chosen, random)):
            deleted = image.copy().ravel()
            deleted[pixels] = blurred.ravel()[pixels]
            into.append(deleted.reshape(image.shape))
    probabilities = classifier.run({"image": np.stack(salient + random)[:, np.newaxis].astype(np.float32)})
    # p(opacity) lower <=> p(clear) higher; p(clear) keeps its digits where p(opacity) rounds to 1.0
    clear = probabilities["probabilities"][:, 1 - OPACITY].astype(np.float64)
    after_salient, after_random = clear[: len(images)], clear[len(images) :]
    rate = float((after_salient > after_random).mean())
    print(f"deletion: top 10% lowers p(opacity) more than a random 10% in {rate:.3f} of {len(images)}")
    assert rate >= 0.9


def _blurred(image: np.ndarray) -> np.ndarray:
    """The image under a Gaussian blur of 3 pixels: a small bright finding fades, its surroundings
    stay. (A much wider blur, or the image's mean, paints the dark lung brighter over the whole
    salient patch, 40 pixels across: to this model that is itself an opacity.)"""
    pixels = Image.fromarray(np.round(image * 255).astype(np.uint8))
    return np.asarray(pixels.filter(ImageFilter.GaussianBlur(3)), dtype=np.float32) / 255


def _dilated(mask: np.ndarray, pixels: int) -> np.ndarray:
    grown = np.zeros_like(mask)
    for dy in range(-pixels, pixels + 1):
        for dx in range(-pixels, pixels + 1):
            if dy * dy + dx * dx <= pixels * pixels:  # nodules lie well inside the image: no wrap-around
                grown |= np.roll(mask, (dy, dx), axis=(0, 1))
    return grown
