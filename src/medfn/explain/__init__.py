"""Why a model answered as it did: the pieces that tasks put together in `Model.explain`.

    maps.py        a map on the model's input grid -> the scan's own grid; normalising; the
                   low-resolution map a JSON answer carries
    overlay.py     the colour map (a few lines of numpy) and the heat map over the scan, as a PNG
    cam.py         class activation maps from a graph's saliency output ([explain] output)
    occlusion.py   occlusion sensitivity: a bounded grid of occluded copies, run as one batch
    image.py       an image task's map -> `Explanation` details (map, shape, overlay)

The methods, and what each does not show, are in README.md ("Explanations"). Nothing here
imports a task, onnxruntime or the HTTP layer: tasks call in (medfn.tasks.imaging and the
image tasks). The names below load their module on first use (PEP 562).
"""

from medfn import _lazy_names

# Public name -> the module that defines it, imported when the name is first used.
_HOMES = {
    "MAX_OCCLUDED_COPIES": "occlusion",
    "class_activation": "cam",
    "heat_colours": "overlay",
    "image_explanation": "image",
    "occluded_copies": "occlusion",
    "occlusion_grid": "occlusion",
    "onto_image": "maps",
    "overlay_png": "overlay",
    "relative": "maps",
    "sensitivity": "occlusion",
    "upsample": "maps",
}
__all__ = sorted(_HOMES)

__getattr__ = _lazy_names(__name__, _HOMES)
