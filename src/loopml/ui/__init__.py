"""The web UI's templates, static files and the small pure functions that shape data for them.

Pages are rendered on the server with Jinja2 (autoescape always on) by
``loopml.server.routes.ui``; the browser gets one stylesheet, one hand-written script and
Plotly's own minified bundle, served from the installed ``plotly`` package (no CDN, no build).
The API docs page (``/api/v1/docs``) gets Swagger UI the same way, from ``swagger-ui-bundle-v2``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from loopml.errors import MissingDependency
from loopml.ui.formatting import FILTERS

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
PLOTLY_URL_PREFIX = "vendor/plotly-"
SWAGGER_URL_PREFIX = "vendor/swagger-ui/"

_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    """A file the UI serves under ``/static/<name>``, with a content hash for cache busting."""

    name: str
    path: Path
    media_type: str
    digest: str

    @property
    def url(self) -> str:
        return f"/static/{self.name}?v={self.digest}"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def plotly_js_path() -> Path:
    """``plotly.min.js`` inside the installed ``plotly`` Python package."""
    try:
        import plotly
    except ImportError as e:
        raise MissingDependency("the web UI's charts need plotly: pip install 'plotly>=5'") from e
    base = Path(plotly.__file__).resolve().parent
    for candidate in (base / "package_data" / "plotly.min.js",):
        if candidate.is_file():
            return candidate
    found = sorted(base.rglob("plotly.min.js"))
    if not found:
        raise MissingDependency("the installed plotly package has no plotly.min.js")
    return found[0]


@cache
def static_files() -> dict[str, StaticFile]:
    """Every file the UI may serve, by name: an allow-list, so no path reaches the disk."""
    files: dict[str, StaticFile] = {}
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file() and path.suffix in _TYPES:
            files[path.name] = StaticFile(path.name, path, _TYPES[path.suffix], _digest(path))
    for asset, path in swagger_ui_assets().items():
        files[asset] = StaticFile(asset, path, _TYPES[path.suffix], _digest(path))
    try:
        plotly_path = plotly_js_path()
    except MissingDependency:
        return files
    digest = _digest(plotly_path)
    name = f"{PLOTLY_URL_PREFIX}{digest}.min.js"
    files[name] = StaticFile(name, plotly_path, _TYPES[".js"], digest)
    return files


def swagger_ui_assets() -> dict[str, Path]:
    """Swagger UI's bundle and stylesheet from the installed ``swagger-ui-bundle-v2`` package,
    by the name they are served under (``/static/vendor/swagger-ui/…``); empty if missing."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return {}
    base = Path(swagger_ui_path)
    names = ("swagger-ui-bundle.js", "swagger-ui.css")
    return {f"{SWAGGER_URL_PREFIX}{n}": base / n for n in names if (base / n).is_file()}


def plotly_url() -> str | None:
    for name, file in static_files().items():
        if name.startswith(PLOTLY_URL_PREFIX):
            return file.url
    return None


@cache
def environment() -> jinja2.Environment:
    """The templates, autoescaped whatever their names; missing variables are errors."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    env.globals["static"] = lambda name: static_files()[name].url
    env.globals["plotly_url"] = plotly_url
    # Chart data must be JSON a browser parses: NaN and infinity are nulls before this point.
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "allow_nan": False}
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
