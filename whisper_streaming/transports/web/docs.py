"""The API's OpenAPI document and its docs pages, served without a CDN.

FastAPI's own ``/docs`` and ``/redoc`` pages load Swagger UI and ReDoc from jsDelivr (and ReDoc
its fonts from Google), which a machine without internet access cannot reach.
:func:`install_docs` serves the same pages with the files of the ``fastapi-offline`` package
(MIT; it ships Swagger UI 5's ``swagger-ui-bundle.js`` and ``swagger-ui.css`` (Apache-2.0),
ReDoc 2's ``redoc.standalone.js`` (MIT) and a favicon) from the app itself:

===========================  ===============================================================
route                        what
===========================  ===============================================================
``GET /openapi.json``        the OpenAPI document (``app.openapi_url`` when the app has one)
``GET /docs``                Swagger UI
``GET /redoc``               ReDoc (no Google Fonts: the browser's own sans-serif)
``GET /docs-assets/*``       the scripts, the stylesheet and the favicon
===========================  ===============================================================

Every URL in the pages is relative to the server (behind a proxy, prefixed with the ASGI
``root_path``).  Swagger UI's online validator (``validatorUrl``) is turned off.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from whisper_streaming.errors import UsageError

__all__ = ["install_docs", "ASSETS_DIR", "ASSETS_PATH", "DOCS_PATH", "REDOC_PATH", "OPENAPI_PATH"]

ASSETS_DIR = Path(str(files("fastapi_offline").joinpath("static")))
"""Swagger UI's and ReDoc's files, as the ``fastapi-offline`` package installs them."""
ASSETS_PATH = "/docs-assets"
DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
OPENAPI_PATH = "/openapi.json"
"""Where the OpenAPI document is served when the app was built without one (``openapi_url=None``)."""


def install_docs(app: FastAPI, *, title: str | None = None) -> None:
    """Serve the OpenAPI document, ``/docs`` (Swagger UI), ``/redoc`` and their files from ``app``.

    ``app`` must be built with ``docs_url=None, redoc_url=None`` (FastAPI's pages load their
    scripts from a CDN); its ``openapi_url`` is kept when set, else the document is served at
    :data:`OPENAPI_PATH`.  ``title``: the pages' title (default: ``app.title``).  None of the
    added routes is in the OpenAPI document itself.

    Raises:
        UsageError: ``app`` already serves FastAPI's own ``/docs`` or ``/redoc``.
    """
    if app.docs_url is not None or app.redoc_url is not None:
        raise UsageError("build the app with docs_url=None and redoc_url=None: FastAPI's own docs pages load their scripts from a CDN")
    openapi_url = app.openapi_url or OPENAPI_PATH
    page_title = title or app.title

    if app.openapi_url is None:
        @app.get(openapi_url, include_in_schema=False)
        async def openapi_document() -> JSONResponse:
            return JSONResponse(app.openapi())

    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        parameters: dict[str, Any] = {**(app.swagger_ui_parameters or {}), "validatorUrl": None}
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{page_title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters=parameters,
        )

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{page_title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )
