"""What `[preprocessing]`, `[postprocessing]` and `[explain]` of model.toml may hold, task by task.

One declaration serves three ends: a key no task knows is a load problem (never silently
ignored), a value outside its choices is one too, and model_store/README.md's reference
tables are generated from it (`python -m medfn.tasks.options model_store/README.md`), so the
docs cannot drift.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Option:
    default: Any
    doc: str
    choices: tuple[str, ...] = ()


Options = dict[str, Option]

IMAGE_PREPROCESSING: Options = {
    "size": Option(None, "[height, width] of the model's input image, in pixels (required)"),
    "layout": Option("NCHW", "how the input tensor holds an image", ("NCHW", "NHWC")),
    "color": Option("L", "channels and their order: grey, or colour as RGB or BGR", ("L", "RGB", "BGR")),
    "scale": Option("unit", "pixel values before mean/std: 0-1 (unit) or 0-255 (byte)", ("unit", "byte")),
    "mean": Option([0.0], "subtracted per channel after scaling (one value, or one per channel)"),
    "std": Option([1.0], "divided per channel after the mean (one value, or one per channel)"),
    "resize": Option(
        "area",
        "to the model's size: area averages when shrinking and is bilinear when enlarging; the others"
        " are the same method both ways",
        ("area", "nearest", "bilinear", "bicubic"),
    ),
    "antialias": Option(True, "bilinear and bicubic average over the source when shrinking (false: point samples)"),
    "aspect": Option(
        "stretch",
        "how a scan of another aspect ratio is fitted: stretched, padded with zeros, or centre-cropped",
        ("stretch", "pad", "crop"),
    ),
    "window": Option(None, "[center, width] VOI window for DICOM, in the modality's units (e.g. HU)"),
    "window_source": Option("file", "whose window wins for DICOM: the file's, or the model's", ("file", "model")),
    "max_pixels": Option(64_000_000, "larger images are refused before decoding"),
}
CLASS_POSTPROCESSING: Options = {
    "labels": Option(None, "one label per output class, in the output's order (required)"),
    "output": Option(None, "the output the answer is read from (default: the first)"),
    "activation": Option(
        "none",
        "what turns the output into probabilities: none (they are), softmax (logits), sigmoid (one score"
        " per class, or a single score with positive_label and threshold)",
        ("none", "softmax", "sigmoid"),
    ),
    "threshold": Option(0.5, "a single sigmoid score (or, multi-label, each label's) at or above it is positive"),
    "multi_label": Option(
        False,
        "independent labels (several may hold): probabilities are each label's own, `label` the likeliest"
        " present (or none), and the answer lists every present label",
    ),
    "positive_label": Option(None, "the label a single score (or the answer's emphasis) stands for"),
}

TASK_OPTIONS: dict[str, tuple[Options, Options]] = {
    "tensor": ({}, {}),
    "image_classification": (IMAGE_PREPROCESSING, CLASS_POSTPROCESSING),
    "image_segmentation": (
        IMAGE_PREPROCESSING,
        {
            "output": CLASS_POSTPROCESSING["output"],
            "threshold": Option(0.5, "pixels whose probability reaches it are in the mask"),
            "label": Option("foreground", "what the mask shows (e.g. lesion)"),
        },
    ),
    "text_classification": (
        {
            "tokenizer": Option("regex", "how a note becomes tokens", ("regex",)),
            "pattern": Option(r"\w+", "the regular expression whose matches are the tokens"),
            "lowercase": Option(True, "lowercase the note first"),
            "vocab": Option("vocab.json", "token -> id, an artifact of each version"),
            "pad_id": Option(0, "the id that pads a batch"),
            "unk_id": Option(1, "the id of a token not in the vocabulary"),
            "max_tokens": Option(512, "tokens beyond it are dropped (and /v2 refuses longer inputs)"),
            "max_chars": Option(20_000, "longer notes are refused"),
        },
        CLASS_POSTPROCESSING,
    ),
    "tabular_classification": (
        {"features": Option(None, "the input's columns by name, in order (required)")},
        CLASS_POSTPROCESSING,
    ),
    "timeseries_risk": (
        {
            "features": Option(None, "each observation's fields by name, in the input's order (required)"),
            "ranges": Option({}, "name = [low, high]: plausible values; others are refused (422)"),
            "categories": Option({}, "name = {letter = value}: words accepted for a numeric field"),
            "min_length": Option(1, "fewest observations in a series"),
            "max_length": Option(48, "most observations in a series"),
        },
        {
            "output": CLASS_POSTPROCESSING["output"],
            "bands": Option([[0.0, "low"], [0.5, "high"]], "[[lower bound, band], ...]: the answer's label"),
            "labels": Option(["no event", "event"], "the two outcomes the probabilities name"),
            "news2": Option(False, "add the latest observation's NEWS2 score"),
        },
    ),
    "volume_segmentation": (
        {
            "pixel_spacing_mm": Option(
                None, "in-plane spacing of the model's grid: slices are resampled to it (required)"
            ),
            "window": Option(None, "[center, width] in HU, mapped to 0-1 before the model (required)"),
            "context_mm": Option(
                None, "distances along the slice normal of the neighbours stacked as channels, 0 among them (required)"
            ),
            "min_slices": Option(1, "a series of fewer slices is refused"),
            "slice_spacing_mm": Option(
                None, "[low, high] slice spacing of the training data: outside it, a warning (unset: no check)"
            ),
        },
        {
            "output": CLASS_POSTPROCESSING["output"],
            "threshold": Option(0.5, "voxels whose probability reaches it are in the mask"),
            "min_volume_mm3": Option(0.0, "connected components (26-connected) smaller than this are dropped"),
            "label": Option("foreground", "what the mask shows (e.g. nodule)"),
        },
    ),
}


_BATCH = Option(0, "variants run at once when explaining; 0: max_batch_size (every variant at once when that is 0)")
_BASELINE = Option(
    None,
    "one value per feature, in the features' order: what a feature is replaced by to weigh it when"
    " explaining (the training median, written by model_store/build/baselines.py); unset: no explanations",
)
# `[explain]` of the tasks that explain by replacement (medfn.tasks.records); their task_problems check it.
EXPLAIN_OPTIONS: dict[str, Options] = {
    "text_classification": {"batch": _BATCH},
    "tabular_classification": {"baseline": _BASELINE, "batch": _BATCH},
    "timeseries_risk": {"baseline": _BASELINE, "batch": _BATCH},
}


def explain_problems(task: str, table: dict[str, Any]) -> list[str]:
    """`[explain]` keys the task does not know."""
    options = EXPLAIN_OPTIONS.get(task, {})
    known = ", ".join(sorted(options)) or "none"
    return [f"[explain] {key} is not a {task} setting; settings: {known}" for key in table if key not in options]


def option_problems(task: str, preprocessing: dict[str, Any], postprocessing: dict[str, Any]) -> list[str]:
    """Keys the task does not know, and values outside their choices."""
    declared = TASK_OPTIONS.get(task)
    if declared is None:
        return []
    problems = []
    for section, table, options in (
        ("preprocessing", preprocessing, declared[0]),
        ("postprocessing", postprocessing, declared[1]),
    ):
        for key, value in table.items():
            option = options.get(key)
            if option is None:
                known = ", ".join(sorted(options)) or "none"
                problems.append(f"[{section}] {key} is not a {task} setting; settings: {known}")
            elif option.choices and value not in option.choices:
                problems.append(f"[{section}] {key} = {value!r}; one of {', '.join(option.choices)}")
    return problems


def reference() -> str:
    """model_store/README.md's settings reference, in Markdown."""
    lines = []
    for task, (pre, post) in TASK_OPTIONS.items():
        if not pre and not post:
            continue
        explain = EXPLAIN_OPTIONS.get(task, {})
        lines += [f"### `{task}`", "", "| section | key | default | what it means |", "|---|---|---|---|"]
        for section, options in (("preprocessing", pre), ("postprocessing", post), ("explain", explain)):
            for key, option in options.items():
                choices = f" One of: {', '.join(f'`{c}`' for c in option.choices)}." if option.choices else ""
                default = (
                    "required" if option.default is None and "(required)" in option.doc else f"`{option.default!r}`"
                )
                doc = option.doc.replace(" (required)", "")
                lines.append(f"| `[{section}]` | `{key}` | {default} | {doc}.{choices} |")
        lines.append("")
    return "\n".join(lines)


def write_reference(readme: Path) -> None:
    """Replace the reference between the README's markers with the one these declarations give."""
    begin, end = "<!-- settings reference: begin -->\n", "<!-- settings reference: end -->"
    text = readme.read_text()
    head, rest = text.split(begin, 1)
    readme.write_text(head + begin + reference() + end + rest.split(end, 1)[1])


if __name__ == "__main__":  # python -m medfn.tasks.options [model_store/README.md]: rewrite it, else print
    if len(sys.argv) > 1:
        write_reference(Path(sys.argv[1]))
    else:
        sys.stdout.write(reference())
