"""The API's interactive docs (``/api/v1/docs``): Swagger UI from the installed package.

FastAPI's own page loads Swagger UI from a CDN and starts it with an inline script; our CSP
allows neither (same-origin scripts only), and a CDN breaks offline use. This page takes the
bundle and stylesheet from ``/static/vendor/swagger-ui/`` (the UI's declared static route, fed by
``swagger-ui-bundle-v2``) and starts it from ``/static/api-docs.js``. There is no ReDoc page.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from loopml.errors import MissingDependency
from loopml.server.access import public
from loopml.ui import render, swagger_ui_assets

router = APIRouter(include_in_schema=False)
DOCS_PATH = "/api/v1/docs"


@router.get(DOCS_PATH, **public())
def api_docs(request: Request) -> HTMLResponse:
    if not swagger_ui_assets():
        raise MissingDependency("the API docs need Swagger UI: pip install swagger-ui-bundle-v2")
    html = render("api_docs.html", title=request.app.title, openapi_url=request.app.openapi_url)
    return HTMLResponse(html, headers={"cache-control": "no-cache"})
