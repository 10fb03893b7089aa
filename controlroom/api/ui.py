"""The operators' screen: HTML pages and static assets from controlroom/web/, all served locally.

No CDN, no build step: plain HTML, CSS and JavaScript modules. The pages contain no inline
script or style, so the strict Content-Security-Policy that controlroom.security puts on every
response holds (scripts, styles and media from this origin only; media also from ``blob:``,
which Media Source Extensions use).
The pages and assets are public (they hold no data); everything they show comes from the API,
which checks the session.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

from controlroom.permissions import Permission, requires

routes = web.RouteTableDef()
WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml",
         ".png": "image/png", ".ico": "image/x-icon", ".woff2": "font/woff2"}


def _page(request: web.Request, name: str) -> web.Response:
    body = (WEB_ROOT / name).read_bytes()
    headers = {"Cache-Control": "no-store"}
    return web.Response(body=body, content_type="text/html", charset="utf-8", headers=headers)


@routes.get("/")
@requires(Permission.PUBLIC, produces="text/html")
async def index(request: web.Request) -> web.Response:
    return _page(request, "index.html")


@routes.get("/login")
@requires(Permission.PUBLIC, produces="text/html")
async def login_page(request: web.Request) -> web.Response:
    return _page(request, "login.html")


@routes.get("/static/{path:.+}")
@requires(Permission.PUBLIC, produces="*/*")  # scripts, styles, images: the type of each file
async def static(request: web.Request) -> web.Response:
    rel = request.match_info["path"]
    try:
        full = (WEB_ROOT / rel).resolve()
        found = full.is_relative_to(WEB_ROOT) and full.is_file() and full.suffix != ".html"
    except (OSError, ValueError):  # a name too long for the file system, a NUL: no such file
        found = False
    if not found:
        raise web.HTTPNotFound()
    ctype = TYPES.get(full.suffix) or mimetypes.guess_type(full.name)[0] or "application/octet-stream"
    headers = {"Cache-Control": "no-cache"}
    return web.Response(body=full.read_bytes(), content_type=ctype, headers=headers)
