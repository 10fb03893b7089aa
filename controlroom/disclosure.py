"""Disclosures audited by construction: a route that hands out footage, images, plate data or
personal data says so where it is declared (``@requires(..., discloses=..., action=...)``), and
this module writes its audit entry, never the handler.

Exactly one entry per disclosing request that answers with a success status, written before
the first byte of the answer leaves:

- a response the handler returns (JSON, an image, a file) is recorded by
  :func:`disclosure_middleware` before it is returned; if the entry cannot be written the
  request fails with 503 and discloses nothing (``AuditWriteError``, mapped in one place);
- a response the handler starts itself (a video stream, a WebSocket) is recorded by the
  ``on_response_prepare`` hook, which runs before its headers are written; if the entry
  cannot be written, ``prepare`` raises and nothing is sent;
- a handler whose disclosure is part of a transaction of its own (an evidence download enters
  the custody log and the disclosure register) records it there with :func:`record_in`, so both
  commit or neither; the mechanism then writes nothing more.

Handlers add what they disclosed (a camera, a time window, a result count, the search's
reason) with :func:`note`. The entry names the person, how they came (session or token) and
the token's name. ``tests/test_disclosure.py`` walks the router and fails for any route that
returns such data without writing exactly one entry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from controlroom.auth import client_address, current_user, route_of
from controlroom.context import AUDIT
from controlroom.permissions import RouteSpec
from storage import audit

DETAILS = web.RequestKey("disclosure_details", dict)
DONE = web.RequestKey("disclosure_done", bool)
_TARGET = "_target"


def note(request: web.Request, target: str | None = None, **details: Any) -> None:
    """Add what this response discloses to its audit entry (its target and details)."""
    found = request.get(DETAILS)
    if found is None:
        found = request[DETAILS] = {}
    if target:
        found[_TARGET] = target
    found.update(details)


def _entry(request: web.Request, spec: RouteSpec) -> tuple[str, str, str, dict[str, Any]]:
    user = current_user(request)
    details = dict(request.get(DETAILS) or {})
    target = details.pop(_TARGET, None) or f"{request.method} {request.path}"
    resource = request.match_info.route.resource
    details.update(
        disclosed=spec.discloses.value if spec.discloses else None,
        route=f"{request.method} {resource.canonical if resource else request.path}",
        via=user.via, token=user.token_name or None, address=client_address(request),
    )
    return user.username, spec.action, target[:400], details


async def record(request: web.Request) -> None:
    """Write this request's disclosure entry through the group-commit writer (once)."""
    spec = route_of(request)
    if spec is None or spec.discloses is None or request.get(DONE):
        return
    who, action, target, details = _entry(request, spec)
    await request.app[AUDIT].append(who, action, target, **details)
    request[DONE] = True


async def record_in(session: AsyncSession, request: web.Request, target: str | None = None, *,
                    action: str | None = None, **details: Any) -> None:
    """Write the disclosure entry inside the handler's own transaction (once). ``action`` may
    name a variant of the declared one (``evidence.download_resume`` of ``evidence.download``)."""
    spec = route_of(request)
    if spec is None or spec.discloses is None:
        raise RuntimeError(f"{request.method} {request.path} declares no disclosure")
    if action is not None and not action.startswith(spec.action):
        raise RuntimeError(f"{action!r} is not a variant of the declared action {spec.action!r}")
    note(request, target, **details)
    who, declared_action, target, entry_details = _entry(request, spec)
    await audit.append(session, who, action or declared_action, target, **entry_details)
    request[DONE] = True


def _success(response: web.StreamResponse) -> bool:
    return response.status < 400


@web.middleware
async def disclosure_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared and _success(response):
        await record(request)
    return response


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    if _success(response):
        await record(request)


def install(app: web.Application) -> None:
    app.on_response_prepare.append(_on_prepare)
