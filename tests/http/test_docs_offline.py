"""/docs and /redoc work with no internet: every script, style and icon comes from the app.

Hospital networks often reach nothing outside; FastAPI's own pages load Swagger UI from a CDN
and stay blank there. The assets answer on the docs page's path (`/docs?asset=...`), which the
local gateway's API-key gate leaves open, so a browser without a key gets the whole page.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from medfn.http import create_app
from medfn.http.openapi import DOCS_ASSETS
from medfn.metering.keys import ApiKey, KeyGate
from medfn.metering.middleware import Metering
from medfn.metering.sqlite_store import SqliteMeter
from medfn.metering.tiers import Tier
from medfn.serving import InferencePlane

# Every address a page could make a browser fetch or follow: attributes, and quoted URLs in its script.
_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|(?:url|spec-url)\s*[:=]\s*["']([^"']+)["']""")
_ANY_HOST = re.compile(r"(?:https?:)?//[\w.-]+")


def page_urls(html: str) -> list[str]:
    return [a or b for a, b in _URL.findall(html)]


def assert_offline(client: TestClient, page: str, assets: set[str], root: str = "") -> None:
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert not _ANY_HOST.findall(html), _ANY_HOST.findall(html)  # no CDN, no fonts, no validator
    urls = page_urls(html)
    assert f"{root}/openapi.json" in urls, urls
    asset_urls = [url for url in urls if "asset=" in url]
    assert {url.rsplit("=", 1)[1] for url in asset_urls} == assets, urls
    for url in asset_urls:
        assert urlsplit(url).path == f"{root}/docs", url
        answer = client.get(url.removeprefix(root))
        name = url.rsplit("=", 1)[1]
        assert answer.status_code == 200, url
        assert answer.headers["content-type"] == DOCS_ASSETS[name], url
        assert len(answer.content) > 1000, url


def test_swagger_ui_loads_only_from_the_app(affine_client: TestClient) -> None:
    assert_offline(affine_client, "/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"})
    html = affine_client.get("/docs").text
    assert "validatorUrl" in html and '"validatorUrl": null' in html.replace("'", '"')
    script = affine_client.get("/docs?asset=swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in script
    assert affine_client.get("/docs?asset=swagger-ui.css").text.lstrip().startswith((".swagger-ui", "/*", "@"))
    assert affine_client.get("/docs?asset=favicon.png").content.startswith(b"\x89PNG")
    assert affine_client.get("/openapi.json").json()["openapi"].startswith("3.")


def test_redoc_loads_only_from_the_app(affine_client: TestClient) -> None:
    assert_offline(affine_client, "/redoc", {"redoc.standalone.js", "favicon.png"})


def test_pages_behind_a_root_path_point_under_it(affine_plane: InferencePlane) -> None:
    client = TestClient(create_app(affine_plane), root_path="/prod")
    assert_offline(client, "/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}, root="/prod")


@pytest.mark.parametrize("asset", ["nope.js", "../openapi.py", "/etc/passwd", ""])
def test_only_the_known_assets_are_served(affine_client: TestClient, asset: str) -> None:
    response = affine_client.get("/docs", params={"asset": asset})
    assert response.status_code == 404 and "error" in response.json()


def test_a_browser_without_an_api_key_gets_the_whole_page(affine_plane: InferencePlane, tmp_path: Path) -> None:
    gate = KeyGate([ApiKey("clinic", "k" * 24, Tier("trial", rate_limit=1.0, burst_limit=1, quota=10))])
    metering = Metering(meter=SqliteMeter(tmp_path / "usage.sqlite3"), gate=gate)
    client = TestClient(create_app(affine_plane, metering=metering))
    assert client.get("/v2/models").status_code == 403  # the gate is on
    assert_offline(client, "/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"})
