"""The OpenAPI document and the docs pages, served without a CDN (on a bare FastAPI app)."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from whisper_streaming.errors import UsageError
from whisper_streaming.transports.web.docs import ASSETS_PATH, install_docs

REFERENCE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|\burl:\s*["']([^"']+)["']""")


def _app(**kwargs: object) -> FastAPI:
    app = FastAPI(title="Test API", docs_url=None, redoc_url=None, **kwargs)  # type: ignore[arg-type]

    @app.get("/v1/things/{thing_id}")
    async def get_thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    install_docs(app)
    return app


def _references(html: str) -> list[str]:
    return [a or b for a, b in REFERENCE.findall(html)]


def test_openapi_document_is_served_and_lists_the_routes_but_not_the_docs() -> None:
    client = TestClient(_app(openapi_url=None))
    r = client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    paths = r.json()["paths"]
    assert "/v1/things/{thing_id}" in paths
    assert not {"/docs", "/redoc", "/openapi.json"} & set(paths)
    assert r.json()["info"]["title"] == "Test API"


@pytest.mark.parametrize("page,expected", [
    ("/docs", {"/openapi.json", f"{ASSETS_PATH}/swagger-ui-bundle.js", f"{ASSETS_PATH}/swagger-ui.css", f"{ASSETS_PATH}/favicon.png"}),
    ("/redoc", {"/openapi.json", f"{ASSETS_PATH}/redoc.standalone.js", f"{ASSETS_PATH}/favicon.png"}),
])
def test_pages_reference_only_local_files_and_each_is_served(page: str, expected: set[str]) -> None:
    client = TestClient(_app(openapi_url=None))
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html and "fonts.googleapis" not in html
    refs = set(_references(html))
    assert refs == expected
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//")
        asset = client.get(ref)
        assert asset.status_code == 200, ref
        assert len(asset.content) > 100, ref
    if page == "/docs":
        assert '"validatorUrl": null' in html  # no badge fetched from swagger.io
        assert client.get(f"{ASSETS_PATH}/swagger-ui-bundle.js").headers["content-type"].split(";")[0] in (
            "text/javascript", "application/javascript")
        assert client.get(f"{ASSETS_PATH}/swagger-ui.css").headers["content-type"].startswith("text/css")


def test_an_existing_openapi_url_is_kept_and_root_path_prefixes_every_url() -> None:
    client = TestClient(_app(openapi_url="/api/schema.json"), root_path="/asr")
    assert client.get("/api/schema.json").status_code == 200
    refs = _references(client.get("/docs").text)
    assert "/asr/api/schema.json" in refs and f"/asr{ASSETS_PATH}/swagger-ui-bundle.js" in refs
    assert all(ref.startswith("/asr/") for ref in refs)


def test_refuses_an_app_with_fastapis_own_cdn_pages() -> None:
    with pytest.raises(UsageError, match="docs_url=None"):
        install_docs(FastAPI())
    with pytest.raises(UsageError):
        install_docs(FastAPI(docs_url=None))


def test_a_missing_asset_is_404() -> None:
    assert TestClient(_app()).get(f"{ASSETS_PATH}/nope.js").status_code == 404
