"""Pages for people, left out of the schema: the SRE console and Swagger UI.

Both are served from the package (``serve/static/``, no CDN), mounted at ``/static``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parents[1] / "static"


def add_routes(router: APIRouter) -> None:
    """``/console``, ``/docs``, ``/docs/oauth2-redirect`` and the files under ``/static``."""

    @router.get("/console", include_in_schema=False)
    def console() -> FileResponse:
        return FileResponse(STATIC / "console.html", media_type="text/html")

    @router.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Precovery API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
        )

    @router.get("/docs/oauth2-redirect", include_in_schema=False)
    def docs_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    router.mount("/static", StaticFiles(directory=STATIC), name="static")
