"""An fp16 build of a model in the store, for GPUs (tensor cores); inputs and outputs stay FP32.

    .venv/bin/python -m model_store.build.convert_fp16 scan_segmenter            # sibling artifact
    .venv/bin/python -m model_store.build.convert_fp16 scan_segmenter --as-version 2

By default it writes `model_store/<model>/<version>/model.fp16.onnx` beside the fp32 graph:
not listed in model.toml, so never served, ready for benchmarks/gpu_throughput.py or a look.
`--as-version N` writes it as `model_store/<model>/<N>/model.onnx` and adds its sha256 to
model.toml, so it is served as version N (the latest, under the default version policy).

onnxconverter-common's `convert_float_to_float16` with `keep_io_types=True`: the graph casts at
its edges, so clients and model.toml keep FP32 tensors. Weights are rounded to fp16; the
script prints the largest difference from the fp32 graph on random inputs as a check. CPU
builds of onnxruntime lack fp16 kernels for many ops (Conv among them), so the check runs
where it can and says so where it cannot. Deterministic: same input graph, same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

STORE = Path(__file__).resolve().parent.parent  # model_store/


def to_fp16(source: Path, target: Path) -> None:
    from onnxconverter_common import float16

    model = onnx.load(str(source))
    with warnings.catch_warnings():
        # one warning per tiny weight rounded to fp16's smallest normal: noise, not news
        warnings.filterwarnings("ignore", message="the float32 number", category=UserWarning)
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(half, str(target))


def max_difference(fp32: Path, fp16: Path, batch: int = 2, seed: int = 0) -> float | None:
    """Largest |fp16 - fp32| over every output on one random batch; None if ORT cannot run fp16."""
    reference = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    try:
        half = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime's NOT_IMPLEMENTED: no CPU fp16 kernel for some op
        return None
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in reference.get_inputs():
        shape = [batch if not isinstance(d, int) or d < 0 else d for d in spec.shape]
        feeds[spec.name] = rng.random(shape, dtype=np.float32)
    return max(
        float(np.abs(a - b).max()) for a, b in zip(reference.run(None, feeds), half.run(None, feeds), strict=True)
    )


def register_version(model_toml: Path, version: int, digest: str) -> None:
    """Append `[versions.N.sha256]`, refusing to overwrite one that is there."""
    text = model_toml.read_text("utf-8")
    if re.search(rf"^\[versions\.{version}\.sha256\]", text, flags=re.MULTILINE):
        raise SystemExit(f"{model_toml} already lists version {version}")
    model_toml.write_text(text.rstrip("\n") + f'\n\n[versions.{version}.sha256]\n"model.onnx" = "{digest}"\n', "utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a model in model_store/, e.g. scan_segmenter")
    parser.add_argument("--version", type=int, default=1, help="the fp32 version to convert (default 1)")
    parser.add_argument("--as-version", type=int, help="write it as this new, served version instead")
    parser.add_argument("--store", type=Path, default=STORE, help="model store root (default: model_store/)")
    args = parser.parse_args()

    source = args.store / args.model / str(args.version) / "model.onnx"
    if args.as_version is None:
        target = source.with_name("model.fp16.onnx")
    else:
        target = args.store / args.model / str(args.as_version) / "model.onnx"
        if target.exists():
            raise SystemExit(f"{target} exists; pick another --as-version")
    to_fp16(source, target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    print(f"wrote {target} ({target.stat().st_size} bytes, sha256 {digest})")
    difference = max_difference(source, target)
    if difference is None:
        print("fp16 check skipped: this onnxruntime has no CPU kernels for the fp16 graph (run it on a GPU)")
    else:
        print(f"max |fp16 - fp32| on a random batch: {difference:.2e}")
    if args.as_version is not None:
        register_version(args.store / args.model / "model.toml", args.as_version, digest)
        print(f"model.toml now lists version {args.as_version}")


if __name__ == "__main__":
    main()
