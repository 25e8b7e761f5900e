"""schemathesis against each function's OpenAPI document, through `medfn serve`: requests that fit
the document and requests that break it, a fixed seed and a bounded number per operation. No
answer may be a 5xx, every refusal is `{"error": "..."}`, and the server stays up."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis import GenerationMode

from tests.conftest import LiveServer

MODELS = ("scan_classifier", "scan_segmenter", "notes_classifier", "vitals_risk", "breast_mass")
SEED = 20_240_607
CASES_PER_OPERATION = 20  # per generation mode, at most: the bound that keeps this well under a minute
# The infer operations parse the most (JSON tensors with simdjson, binary parts): they get more.
# Malformed JSON itself (stray keys) is also drawn by tests/http/test_property_answers.py.
INFER_CASES = 60


@pytest.fixture(scope="module")
def gateway_document(medfn_server: LiveServer) -> dict[str, Any]:
    return httpx.get(medfn_server.url + "/openapi.json").json()


# Bodies a JSON parser has tripped on, sent first (schemathesis's explicit phase) to every infer
# operation: document-driven generation alone did not reach the NUL-key 500 at 150 cases.
HOSTILE_INFER_BODIES = {
    "a NUL in an input's key": {"inputs": [{"a\u0000": 1, "name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]},
    "a NUL in a top-level key": {"a\u0000": 1, "inputs": []},
    "a key that is only a NUL": {"\u0000": {"\u0000": []}, "inputs": [{"\u0000": None}]},
}


def function_document(gateway: dict[str, Any], model: str, versions: list[str]) -> dict[str, Any]:
    """The routes of one function as its own API has them: `{model}` is its model, `{version}`
    its versions. Left free, they would be random strings, and every request a 404."""
    pinned = {"model": [model], "version": versions}
    document = copy.deepcopy(gateway)
    document["paths"] = {path: ops for path, ops in document["paths"].items() if "{model}" in path}
    for path, operations in document["paths"].items():
        if path.endswith("/infer"):
            examples = {name: {"value": body} for name, body in HOSTILE_INFER_BODIES.items()}
            operations["post"]["requestBody"]["content"]["application/json"]["examples"] = examples
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] in pinned:
                    parameter["schema"] = {"type": "string", "enum": pinned[parameter["name"]]}
    return document


def gateway_routes(gateway: dict[str, Any]) -> dict[str, Any]:
    """The routes that name no model: listing, health, server metadata, metrics."""
    document = copy.deepcopy(gateway)
    document["paths"] = {path: ops for path, ops in document["paths"].items() if "{model}" not in path}
    return document


def fuzz(document: dict[str, Any], url: str) -> int:
    """Every operation of `document`, in both generation modes; returns how many requests went out."""
    sent = 0
    with requests.Session() as session:
        for result in schemathesis.openapi.from_dict(document).get_all_operations():
            operation = result.ok()
            breakable = any(True for _ in operation.iter_parameters()) or bool(operation.body)
            # an operation with no parameters and no body has no request that breaks its document
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if breakable else (GenerationMode.POSITIVE,):

                @seed(SEED)
                @settings(
                    max_examples=INFER_CASES if operation.path.endswith("/infer") else CASES_PER_OPERATION,
                    deadline=None,
                    database=None,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=operation.as_strategy(generation_mode=mode))
                def exchange(mode: GenerationMode, case: schemathesis.Case) -> None:
                    nonlocal sent
                    sent += 1
                    response = case.call(base_url=url, session=session, timeout=30)
                    where = (
                        f"{case.method} {case.formatted_path} ({mode}) -> {response.status_code}: {response.text[:300]}"
                    )
                    assert response.status_code < 500, where
                    if response.status_code >= 400:
                        assert isinstance(response.json().get("error"), str), where

                exchange(mode)
    return sent


@pytest.mark.parametrize("model", MODELS)
def test_a_function_never_answers_5xx(medfn_server: LiveServer, gateway_document: dict[str, Any], model: str) -> None:
    versions = httpx.get(f"{medfn_server.url}/v2/models/{model}").json()["versions"]
    sent = fuzz(function_document(gateway_document, model, versions), medfn_server.url)
    print(f"schemathesis: {sent} requests to {model}'s routes")
    assert medfn_server.alive(), medfn_server.log.read_text(errors="replace")[-3000:]


def test_the_gateway_routes_never_answer_5xx(medfn_server: LiveServer, gateway_document: dict[str, Any]) -> None:
    sent = fuzz(gateway_routes(gateway_document), medfn_server.url)
    print(f"schemathesis: {sent} requests to the gateway's own routes")
    assert medfn_server.alive(), medfn_server.log.read_text(errors="replace")[-3000:]
