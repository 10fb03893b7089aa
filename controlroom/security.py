"""Security headers on every response: a strict Content-Security-Policy, HSTS under TLS, and
the usual hardening headers.

Set from ``on_response_prepare`` rather than a middleware, so streamed responses, static files
and aiohttp's own 404/405 pages get them too. The policy allows only this origin's scripts,
styles and media, and no inline script or style: pages must load their JS and CSS from files.
"""

from __future__ import annotations

from aiohttp import web

from controlroom.context import SETTINGS

CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "font-src 'self'",
    "connect-src 'self'",
    "manifest-src 'self'",
    "worker-src 'self' blob:",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "object-src 'none'",
])
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# Two years, the value browsers' preload lists ask for.
HSTS = "max-age=63072000; includeSubDomains"


def tls_enabled(request: web.Request) -> bool:
    http = request.app[SETTINGS].http
    return request.secure or bool(http.tls_cert and http.tls_key)


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if tls_enabled(request):
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    # API replies hold personal data: never cache them (pages and static files may set their own).
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")


def install(app: web.Application) -> None:
    app.on_response_prepare.append(add_security_headers)
