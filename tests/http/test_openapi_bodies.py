"""The OpenAPI document shows each model's own request body, generated from its model.toml."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.http.test_refusals import FEATURES


def body_schema(client: TestClient, model: str, media_type: str = "application/json") -> dict:  # type: ignore[type-arg]
    document = client.get("/openapi.json").json()
    operation = document["paths"][f"/v1/models/{model}/predict"]["post"]
    return dict(operation["requestBody"]["content"][media_type]["schema"])


def test_breast_mass_shows_its_thirty_features(gateway_client: TestClient) -> None:
    record, batch = body_schema(gateway_client, "breast_mass")["oneOf"]
    assert record["required"] == FEATURES and record["additionalProperties"] is False
    assert batch["properties"]["records"]["maxItems"] == 64


def test_vitals_show_their_fields_with_their_ranges(gateway_client: TestClient) -> None:
    schema = body_schema(gateway_client, "vitals_risk")
    series = schema["properties"]["observations"]
    assert (series["minItems"], series["maxItems"]) == (1, 48)
    fields = series["items"]["properties"]
    assert fields["heart_rate"] == {"type": "number", "minimum": 20, "maximum": 250}
    assert {"enum": ["A", "C", "P", "U", "V"]} in fields["consciousness"]["oneOf"]


def test_scans_and_notes_show_their_media_types(gateway_client: TestClient) -> None:
    document = gateway_client.get("/openapi.json").json()
    scan = document["paths"]["/v1/models/scan_classifier/predict"]["post"]["requestBody"]["content"]
    assert {"image/png", "image/jpeg", "application/dicom", "application/json"} == set(scan)
    note = body_schema(gateway_client, "notes_classifier", "text/plain")
    assert note["maxLength"] == 20000
