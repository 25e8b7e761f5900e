"""`medfn import`: model.toml, the graph's copy and a function from an ONNX file, guesses marked REVIEW.

Runs the command in process (medfn.cli.main) into temporary folders. `medfn check` is not run
here: what it holds model.toml to is tested with the tasks.
"""

from __future__ import annotations

import hashlib
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from medfn.cli import main

Dim = int | str


def graph_file(
    path: Path,
    nodes: list[onnx.NodeProto],
    inputs: dict[str, tuple[int, list[Dim]]],
    outputs: dict[str, tuple[int, list[Dim]]],
    weights: dict[str, np.ndarray],
) -> Path:
    """An ONNX file from nodes, named inputs and outputs ({name: (element type, shape)}) and weights."""
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info(name, kind, shape) for name, (kind, shape) in inputs.items()],
        [helper.make_tensor_value_info(name, kind, shape) for name, (kind, shape) in outputs.items()],
        initializer=[numpy_helper.from_array(array.astype(np.float32), name) for name, array in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


FLOAT = TensorProto.FLOAT


def nchw_softmax(path: Path) -> Path:
    """[N, 3, 32, 32] -> pool -> 3 classes -> Softmax."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    return graph_file(
        path,
        nodes,
        {"image": (FLOAT, ["batch", 3, 32, 32])},
        {"probabilities": (FLOAT, ["batch", 3])},
        {"w": np.eye(3)},
    )


def nhwc_logits(path: Path) -> Path:
    """[N, 32, 32, 3] -> mean over H and W -> 4 raw logits."""
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["pooled"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
    ]
    return graph_file(
        path,
        nodes,
        {"image": (FLOAT, ["N", 32, 32, 3])},
        {"logits": (FLOAT, ["N", 4])},
        {"w": np.ones((3, 4))},
    )


def single_sigmoid(path: Path) -> Path:
    """5 features -> one score -> Sigmoid: [N, 1]."""
    nodes = [
        helper.make_node("MatMul", ["features", "w"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["score"]),
    ]
    return graph_file(
        path, nodes, {"features": (FLOAT, ["batch", 5])}, {"score": (FLOAT, ["batch", 1])}, {"w": np.ones((5, 1))}
    )


def unbatched_tensor(path: Path) -> Path:
    """y = x * 2 for x of shape [4]: no batch dimension."""
    nodes = [helper.make_node("Mul", ["x", "two"], ["y"])]
    return graph_file(path, nodes, {"x": (FLOAT, [4])}, {"y": (FLOAT, [4])}, {"two": np.asarray(2.0)})


def medfn_import(tmp_path: Path, model: Path, name: str, task: str, *extra: str) -> int:
    argv = ["import", str(model), "--name", name, "--task", task]
    return main([*argv, "--store", str(tmp_path / "store"), "--functions", str(tmp_path / "functions"), *extra])


def written(tmp_path: Path, name: str) -> tuple[dict[str, Any], list[str]]:
    """model.toml as parsed, and its lines."""
    text = (tmp_path / "store" / name / "model.toml").read_text("utf-8")
    return tomllib.loads(text), text.splitlines()


def review_above(lines: list[str], key: str) -> str:
    """The `# REVIEW:` comment right above `key = ...`; "" where the value was not guessed."""
    at = next(i for i, line in enumerate(lines) if line.startswith(f"{key} = "))
    return lines[at - 1] if at and lines[at - 1].startswith("# REVIEW: ") else ""


def test_an_nchw_classifier_ending_in_softmax(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = nchw_softmax(tmp_path / "nchw.onnx")
    assert medfn_import(tmp_path, model, "chest", "image_classification", "--labels", "clear,opacity,effusion") == 0
    config, lines = written(tmp_path, "chest")
    assert config["name"] == "chest" and config["task"] == "image_classification"
    assert config["max_batch_size"] == 32 and "'batch'" in review_above(lines, "max_batch_size")
    assert config["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]
    assert config["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]
    prep, post = config["preprocessing"], config["postprocessing"]
    assert prep["layout"] == "NCHW" and "dim 1" in review_above(lines, "layout")
    assert prep["color"] == "RGB" and "BGR" in review_above(lines, "color")
    assert prep["size"] == [32, 32] and review_above(lines, "size") == ""  # read from the graph, not guessed
    assert prep["scale"] == "unit" and prep["mean"] == [0.0] and prep["std"] == [1.0]
    assert all(review_above(lines, key) for key in ("scale", "mean", "std", "resize", "aspect"))
    assert post == {"output": "probabilities", "labels": ["clear", "opacity", "effusion"], "activation": "none"}
    assert review_above(lines, "labels") == "" and review_above(lines, "activation") == ""
    assert "# the graph ends in Softmax: its output is probabilities already" in lines
    copy = tmp_path / "store" / "chest" / "1" / "model.onnx"
    assert copy.read_bytes() == model.read_bytes()
    assert config["versions"]["1"]["sha256"] == {"model.onnx": hashlib.sha256(model.read_bytes()).hexdigest()}
    assert config["version_policy"] == {"policy": "latest"}
    card = config["card"]
    assert card["notice"] == "demonstration model, not for clinical use"
    assert all(review_above(lines, key) for key in ("summary", "data", "intended_use", "limitations", "notice"))

    function = tmp_path / "functions" / "chest"
    settings = tomllib.loads((function / "function.toml").read_text("utf-8"))
    assert settings["name"] == settings["model"] == "chest" and settings["triggers"] == {"http": True, "uploads": False}
    handler = (function / "handler.py").read_text("utf-8")
    assert handler == "from medfn.lambda_handler import make_handler\n\nhandler = make_handler(__file__)\n"

    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'store' / 'chest' / 'model.toml'}" in out and f"wrote {function / 'handler.py'}" in out
    reviews = sum(line.startswith("# REVIEW: ") for line in lines)
    assert f"{reviews + 3} values to review" in out  # the function's description, memory and timeout too
    assert "preprocessing.layout: dim 1" in out and "max_batch_size:" in out
    assert out.rstrip().endswith(f"`medfn check chest --store {tmp_path / 'store'}`")


def test_an_nhwc_classifier_of_raw_logits(tmp_path: Path) -> None:
    assert medfn_import(tmp_path, nhwc_logits(tmp_path / "nhwc.onnx"), "skin", "image_classification") == 0
    config, lines = written(tmp_path, "skin")
    prep, post = config["preprocessing"], config["postprocessing"]
    assert prep["layout"] == "NHWC" and "last dim" in review_above(lines, "layout")
    assert prep["size"] == [32, 32] and prep["color"] == "RGB"
    assert config["inputs"][0]["shape"] == [-1, 32, 32, 3] and config["max_batch_size"] == 32
    assert post[
        "activation"
    ] == "softmax" and "4 columns and the graph ends in MatMul: taken as logits" in review_above(lines, "activation")
    assert post["labels"] == ["class_0", "class_1", "class_2", "class_3"] and review_above(lines, "labels")


def test_a_single_sigmoid_score_of_five_features(tmp_path: Path) -> None:
    model = single_sigmoid(tmp_path / "score.onnx")
    assert medfn_import(tmp_path, model, "sepsis", "tabular_classification", "--labels", "negative,sepsis") == 0
    config, lines = written(tmp_path, "sepsis")
    assert config["preprocessing"] == {"features": [f"feature_{i}" for i in range(5)]}
    assert "5 columns" in review_above(lines, "features")
    post = config["postprocessing"]
    assert post["labels"] == ["negative", "sepsis"] and post["activation"] == "none"
    assert post["threshold"] == 0.5 and review_above(lines, "threshold")
    assert post["positive_label"] == "sepsis" and review_above(lines, "positive_label")
    assert "# the graph ends in Sigmoid: its output is probabilities already" in lines
    assert config["max_batch_size"] == 32 and config["outputs"][0]["shape"] == [-1, 1]


def test_a_tensor_model_without_a_batch_dimension(tmp_path: Path) -> None:
    assert medfn_import(tmp_path, unbatched_tensor(tmp_path / "double.onnx"), "double", "tensor") == 0
    config, lines = written(tmp_path, "double")
    assert config["max_batch_size"] == 0 and "no batch axis" in review_above(lines, "max_batch_size")
    assert config["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [4]}]
    assert "preprocessing" not in config and "postprocessing" not in config


def test_without_onnx_it_guesses_from_names_and_shapes_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As in a Lambda bundle: ONNX Runtime alone, so the graph's last nodes are not read."""
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    assert medfn_import(tmp_path, tmp_path.parent / "score.onnx", "score", "tabular_classification") == 0
    config, lines = written(tmp_path, "score")
    post = config["postprocessing"]
    assert post["activation"] == "sigmoid" and "onnx package is not installed" in review_above(lines, "activation")
    assert post["labels"] == ["negative", "positive"] and post["positive_label"] == "positive"
    assert "note: the onnx package is not installed" in capsys.readouterr().out


@pytest.fixture(autouse=True)
def _score_model_beside(tmp_path: Path) -> None:
    """The no-onnx test cannot build its graph once onnx is hidden: build it first."""
    single_sigmoid(tmp_path.parent / "score.onnx")


def test_it_refuses_to_overwrite_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = unbatched_tensor(tmp_path / "double.onnx")
    assert medfn_import(tmp_path, model, "double", "tensor") == 0
    capsys.readouterr()
    assert medfn_import(tmp_path, model, "double", "tensor") == 2
    err = capsys.readouterr().err
    assert err == f"medfn import: {tmp_path / 'store' / 'double'} already exists: pass --force to overwrite its files\n"
    (tmp_path / "store" / "double").rename(tmp_path / "elsewhere")
    assert medfn_import(tmp_path, model, "double", "tensor") == 2  # the function's folder is refused too
    assert str(tmp_path / "functions" / "double") in capsys.readouterr().err
    assert not (tmp_path / "store" / "double").exists()  # nothing written before the refusal
    assert medfn_import(tmp_path, model, "double", "tensor", "--force") == 0


def one_line(capsys: pytest.CaptureFixture[str], *words: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("medfn import: ") and err.count("\n") == 1, err
    assert all(word in err for word in words), err


def test_a_missing_or_invalid_file_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert medfn_import(tmp_path, tmp_path / "missing.onnx", "x", "tensor") == 2
    one_line(capsys, "no such file", "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a graph at all")
    assert medfn_import(tmp_path, junk, "x", "tensor") == 2
    one_line(capsys, "junk.onnx", "is not an ONNX model")
    assert not (tmp_path / "store").exists() and not (tmp_path / "functions").exists()


def test_graphs_that_do_not_fit_the_task_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = nchw_softmax(tmp_path / "nchw.onnx")
    assert medfn_import(tmp_path, image, "x", "image_classification", "--labels", "a,b") == 2
    one_line(capsys, "--labels names 2", "'probabilities'", "needs 3")
    assert medfn_import(tmp_path, unbatched_tensor(tmp_path / "t.onnx"), "x", "image_classification") == 2
    one_line(capsys, "'x'", "[4]", "[N, C, H, W]")
    assert medfn_import(tmp_path, image, "../x", "tensor") == 2
    one_line(capsys, "--name '../x'")
