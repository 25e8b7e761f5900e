"""The hostile-input corpus (tests/hostile/) against `medfn serve`: every file, on every route that
takes it, gets a 4xx with a reason; nothing gets a 5xx, and nothing takes the server down."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer
from tests.hostile.make_corpus import COMMITTED, FOLDER, noise

MODELS = ("scan_classifier", "scan_segmenter", "notes_classifier", "vitals_risk", "breast_mass")
EVERY_TYPE = (
    "image/png",
    "image/jpeg",
    "application/dicom",
    "application/octet-stream",
    "text/plain",
    "application/json",
)
# What a client would label each file as; a file of unknown kind goes out under every label.
# JSON is not sent as text/plain: to the notes model that is a (strange but valid) note.
CONTENT_TYPES = {
    ".png": ("image/png", "application/octet-stream"),
    ".jpg": ("image/jpeg", "application/octet-stream"),
    ".dcm": ("application/dicom", "application/octet-stream"),
    ".json": ("application/json", "application/octet-stream"),
    ".txt": ("text/plain", "application/json"),
    ".bin": EVERY_TYPE,
}
MEBIBYTE = 1 << 20
IMAGES = [name for name in COMMITTED if name.endswith((".png", ".jpg", ".dcm"))]


def labelled(name: str) -> list[tuple[str, str]]:
    return [(name, media) for media in CONTENT_TYPES[name[name.rindex(".") :]]]


RAW_CASES = [case for name in COMMITTED for case in labelled(name)]


@pytest.fixture(scope="module")
def client(medfn_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=medfn_server.url, timeout=60) as session:
        yield session


def corpus(name: str) -> bytes:
    return (FOLDER / name).read_bytes()


def assert_refused(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    error = response.json().get("error")
    assert isinstance(error, str) and error.strip(), response.text[:300]


def predict(model: str) -> str:
    return f"/v1/models/{model}/predict"


def infer(model: str) -> str:
    return f"/v2/models/{model}/infer"


# -- task routes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("name", "media_type"), RAW_CASES)
def test_task_route_refuses_a_hostile_body(client: httpx.Client, model: str, name: str, media_type: str) -> None:
    assert_refused(client.post(predict(model), content=corpus(name), headers={"content-type": media_type}))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", IMAGES)
def test_task_route_refuses_a_hostile_image_however_it_is_wrapped(client: httpx.Client, model: str, name: str) -> None:
    data = corpus(name)
    assert_refused(client.post(predict(model), content=data))  # no content type: the bytes are sniffed
    assert_refused(client.post(predict(model), files={"file": (name, data, "application/octet-stream")}))
    assert_refused(client.post(predict(model), json={"image": base64.b64encode(data).decode()}))


@pytest.mark.parametrize("model", MODELS)
def test_task_route_refuses_20_mb_of_noise(client: httpx.Client, model: str) -> None:
    data = noise()
    response = client.post(predict(model), content=data, headers={"content-type": "application/octet-stream"})
    assert response.status_code == 413
    assert_refused(response)
    # without a Content-Length the limit is enforced while the body streams in
    chunks = (data[start : start + MEBIBYTE] for start in range(0, len(data), MEBIBYTE))
    chunked = client.post(predict(model), content=chunks, headers={"content-type": "image/png"})
    assert chunked.status_code == 413
    assert_refused(chunked)


# -- the inference protocol ------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", list(COMMITTED))
def test_infer_refuses_a_hostile_body_as_json_and_as_binary(client: httpx.Client, model: str, name: str) -> None:
    data = corpus(name)
    assert_refused(client.post(infer(model), content=data, headers={"content-type": "application/json"}))
    # binary extension: the file as the JSON header, then bytes no input claims
    binary = {"content-type": "application/octet-stream", "inference-header-content-length": str(len(data))}
    assert_refused(client.post(infer(model), content=data + b"\x00" * 16, headers=binary))


@pytest.mark.parametrize("model", MODELS)
def test_infer_refuses_20_mb_of_noise(client: httpx.Client, model: str) -> None:
    data = noise()
    for headers in (
        {"content-type": "application/json"},
        {"content-type": "application/octet-stream", "inference-header-content-length": "64"},
    ):
        response = client.post(infer(model), content=data, headers=headers)
        assert response.status_code == 413
        assert_refused(response)


def first_input(client: httpx.Client, model: str) -> dict:
    return client.get(f"/v2/models/{model}").json()["inputs"][0]


def tensor(spec: dict, shape: list[int], data: list[float | int]) -> dict:
    return {"inputs": [{"name": spec["name"], "datatype": spec["datatype"], "shape": shape, "data": data}]}


@pytest.mark.parametrize("model", MODELS)
def test_infer_refuses_an_empty_tensor(client: httpx.Client, model: str) -> None:
    """Zero along the last variable axis: an empty note's token sequence once aborted the process."""
    spec = first_input(client, model)
    shape = [1 if d < 0 else d for d in spec["shape"]]
    shape[max(i for i, d in enumerate(spec["shape"]) if d < 0)] = 0
    assert_refused(client.post(infer(model), json=tensor(spec, shape, [])))


@pytest.mark.parametrize("model", MODELS)
def test_infer_refuses_a_shape_numpy_cannot_hold(client: httpx.Client, model: str) -> None:
    spec = first_input(client, model)
    assert_refused(client.post(infer(model), json=tensor(spec, [0, 2**63], [])))


def test_infer_refuses_values_the_graph_cannot_take(client: httpx.Client) -> None:
    """Valid names, datatypes and shapes whose values the graph refuses: ONNX Runtime's errors."""
    tokens = first_input(client, "notes_classifier")
    assert_refused(client.post(infer("notes_classifier"), json=tensor(tokens, [1, 3], [5, 6, 10**18])))
    vitals = first_input(client, "vitals_risk")  # longer than its positional encoding
    assert_refused(client.post(infer("vitals_risk"), json=tensor(vitals, [1, 3000, 6], [1.0] * 18_000)))


def test_the_server_is_still_up(medfn_server: LiveServer) -> None:
    assert medfn_server.alive(), medfn_server.log.read_text(errors="replace")[-3000:]
