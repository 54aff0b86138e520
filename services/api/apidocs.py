"""/docs: Swagger UI from files installed with Sundial (fastapi-offline's static/), under
the dashboard's Content-Security-Policy. No CDN: the page works offline, and no
third-party script runs on the origin that holds the dashboard's key.
"""

from __future__ import annotations

import base64
import hashlib
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from sundial.api.dashboard import SECURITY_HEADERS

ASSETS = Path(str(files("fastapi_offline") / "static"))
ASSETS_PATH = "/docs-assets"


def include_docs(app: FastAPI) -> None:
    """Serve /docs and its assets (the app is made with docs_url=None, redoc_url=None)."""
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
        # Swagger UI would otherwise send the schema to validator.swagger.io for a badge.
        swagger_ui_parameters={"validatorUrl": None})
    html = page.body.decode()
    headers = dict(SECURITY_HEADERS)
    # The one inline script (Swagger UI's set-up) is allowed by its hash, nothing else.
    headers["Content-Security-Policy"] = headers["Content-Security-Policy"].replace(
        "script-src 'self'", f"script-src 'self' {_script_hash(html)}")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(html, headers=headers)

    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS), name="docs-assets")


def _script_hash(html: str) -> str:
    start = html.rindex("<script>") + len("<script>")
    script = html[start:html.index("</script>", start)]
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
