"""`medfn serve --require-token`: every route but health needs the bearer token."""

from __future__ import annotations

from fastapi.testclient import TestClient

from medfn.http import create_app
from medfn.serving import InferencePlane
from tests.commands.test_cli import assert_one_line, medfn

TOKEN = "0123456789abcdef0123456789abcdef"
INFER = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}]}


def test_routes_need_the_token_and_health_does_not(affine_plane: InferencePlane) -> None:
    client = TestClient(create_app(affine_plane, metrics_route=False, token=TOKEN))
    refused = client.post("/v2/models/affine/infer", json=INFER)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in refused.json()["error"]
    wrong = client.post("/v2/models/affine/infer", json=INFER, headers={"authorization": f"Bearer {TOKEN[:-1]}x"})
    assert wrong.status_code == 401
    assert client.get("/v1/models").status_code == 401
    good = client.post("/v2/models/affine/infer", json=INFER, headers={"authorization": f"Bearer {TOKEN}"})
    assert good.status_code == 200
    assert client.get("/v2/health/live").status_code == 200


def test_serve_refuses_to_start_without_a_token() -> None:
    result = medfn("serve", "--require-token", env={"PATH": "/usr/bin:/bin"})
    assert_one_line(result, "serve", "MEDFN_SERVE_TOKEN")
