"""Every right a route or command can require. Routes declare one with ``@requires(...)``.

Deny by default: a route without a declared permission is refused (and a test walks the router
to make sure none exists). ``PUBLIC`` is the explicit "no login needed" declaration.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar


class Permission(enum.StrEnum):
    PUBLIC = "public"  # no login: health check, login page, static assets
    AUTHENTICATED = "authenticated"  # any logged-in user: own session, own profile
    LIVE_VIEW = "live_view"
    PTZ = "ptz"
    PLAYBACK = "playback"
    EXPORT = "export"  # produce evidence packages
    ANPR_SEARCH = "anpr_search"
    ANPR_ALERTS = "anpr_alerts"  # see and confirm hotlist hits
    HOTLIST_ADMIN = "hotlist_admin"
    EVIDENCE_REQUEST = "evidence_request"  # police: request footage, download own packages
    APPROVE = "approve"  # decide disclosure requests
    HOLDS = "holds"
    AUDIT_READ = "audit_read"
    INVENTORY_READ = "inventory_read"  # list cameras and their state
    ADMIN = "admin"  # inventory, users, settings
    INCIDENTS = "incidents"  # log and update incidents, make bookmarks
    INCIDENT_CLOSE = "incident_close"  # close incidents (then append-only): supervisors
    ROTA = "rota"  # edit the rota, see who was on duty, sign others off (supervisor)
    FAULTS = "faults"  # see camera faults, availability and picture checks; report a fault by hand
    FAULTS_MANAGE = "faults_manage"  # manage faults (contractor, status) and reference views
    RIPA = "ripa"  # the RIPA register: record, review, renew, cancel authorisations; the IPCO report
    DIRECTED_USE = "directed_use"  # read authorisations in force, link one's own directed use of a camera
    SAR = "sar"  # the subject access request register, its footage windows and holds
    REPORTS = "reports"  # the tasking pack and statistics; send a police-safe pack to police
    VIEWS_SHARE = "views_share"  # share layouts and tours with a site or the team; upload site maps, place pins
    UNMASK = "unmask"  # see the pixels under a camera's privacy masks (docs/design/security-model.md)


# What each role may do (docs/design/security-model.md says why). Deny by default: a right not
# listed here is not granted. Administrators get no operational rights (no live view, playback,
# export, ANPR search or approval): keeping the system and watching people are separate duties,
# and a person who does both holds two accounts. Police replay needs no administrator: police
# request footage and download their own approved packages with EVIDENCE_REQUEST alone.
_EVERYONE = frozenset({Permission.PUBLIC, Permission.AUTHENTICATED})
_OPERATOR = _EVERYONE | {
    Permission.LIVE_VIEW, Permission.PTZ, Permission.PLAYBACK, Permission.EXPORT, Permission.ANPR_SEARCH,
    Permission.ANPR_ALERTS, Permission.INVENTORY_READ, Permission.INCIDENTS,
    Permission.FAULTS, Permission.DIRECTED_USE,
}
ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "administrator": _EVERYONE | {
        Permission.ADMIN, Permission.INVENTORY_READ, Permission.HOTLIST_ADMIN, Permission.AUDIT_READ,
        Permission.FAULTS, Permission.FAULTS_MANAGE,
    },
    "supervisor": _OPERATOR | {
        Permission.APPROVE, Permission.HOLDS, Permission.AUDIT_READ, Permission.HOTLIST_ADMIN,
        Permission.INCIDENT_CLOSE, Permission.ROTA, Permission.FAULTS_MANAGE, Permission.RIPA, Permission.SAR, Permission.REPORTS,
        Permission.VIEWS_SHARE,
        Permission.UNMASK,
    },
    "operator": frozenset(_OPERATOR),
    "police": _EVERYONE | {Permission.EVIDENCE_REQUEST},
}
ROLES = tuple(ROLE_PERMISSIONS)


def role_permissions(role: str) -> frozenset[Permission]:
    """The rights of ``role``; an unknown role has none beyond PUBLIC."""
    return ROLE_PERMISSIONS.get(role, frozenset({Permission.PUBLIC}))


class Disclosure(enum.StrEnum):
    """What a route hands out that the audit trail must record (Code principles 7, 9, 10)."""

    FOOTAGE = "footage"  # live video, snapshots, recorded video, evidence packages
    RECORDINGS = "recordings"  # what was recorded when (catalogue, playback plans)
    EVENTS = "events"  # camera events (motion, tampering, ...)
    PLATES = "plates"  # ANPR reads, hits, journeys: vehicle registrations are personal data
    IMAGES = "images"  # plate and overview pictures
    PERSONAL = "personal"  # people's details: evidence requests, custody, register, accounts, audit


class Pixels(enum.StrEnum):
    """Where a route's pictures come from, for the privacy masks (controlroom.masking): masks the
    camera paints itself (ONVIF) are already in its live stream, never in what was recorded or
    kept before they were pushed."""

    LIVE = "live"  # the camera's live stream (live view, snapshots)
    RECORDED = "recorded"  # recorded footage, stills, clips, packages, ANPR pictures


# Resolves the cameras a route's object belongs to (a read, a hit, an evidence request):
# ``async (request) -> set of camera ids``, or None when the object does not exist (the
# handler then answers 404 itself). The middleware refuses the route to a narrowed user when
# any of them is outside the user's sites and cameras.
CameraResolver = Callable[[Any], Awaitable[set[int] | None]]


@dataclass(frozen=True)
class RouteSpec:
    """What a route declares: the right it needs, what it discloses (and under which audit
    action the mechanism records that), and how to find the cameras its object belongs to.
    Path parameters named ``camera``/``camera_id`` and query parameters ``camera`` are checked
    against narrowing without a resolver."""

    permission: Permission
    discloses: Disclosure | None = None
    action: str = ""
    cameras: CameraResolver | None = None
    # The contract (controlroom.contract, docs/design/api.md): pydantic models of the query
    # string and the JSON body, validated before the handler runs (400 naming the field) and
    # handed to it parsed; the success answer's model, status and media type. All of them go
    # into the OpenAPI document served at /api/v1/openapi.json.
    query: type[Any] | None = None
    body: type[Any] | None = None
    response: type[Any] | None = None
    status: int = 200
    produces: str = "application/json"
    # The route hands out pictures of the cameras it reaches: controlroom.masking applies their
    # privacy masks for a user without UNMASK (tests/test_masks_walk.py walks every such route).
    pixels: Pixels | None = None


F = TypeVar("F", bound=Callable[..., Any])
ATTR = "__controlroom_route__"


def requires(
    permission: Permission, *, discloses: Disclosure | None = None, action: str = "",
    cameras: CameraResolver | None = None, query: type[Any] | None = None, body: type[Any] | None = None,
    response: type[Any] | None = None, status: int = 200, produces: str = "application/json",
    pixels: Pixels | None = None,
) -> Callable[[F], F]:
    """Declare the permission a handler needs and, if it hands out footage, images, plate data
    or personal data, what it discloses and the audit action that records each disclosure
    (written by ``controlroom.disclosure``, never by the handler). ``query=``/``body=`` name the
    pydantic models its input is validated against (``controlroom.contract``), ``response=``,
    ``status=`` and ``produces=`` its success answer (published in the OpenAPI document).
    ``pixels=`` says it hands out pictures of cameras, which are then masked (controlroom.masking)."""
    if (discloses is None) != (not action):
        raise ValueError("a disclosing route declares both discloses= and action=")

    def mark(handler: F) -> F:
        setattr(handler, ATTR, RouteSpec(permission, discloses, action, cameras, query, body, response,
                                         status, produces, pixels))
        return handler

    return mark


def route_spec(handler: Any) -> RouteSpec | None:
    return getattr(handler, ATTR, None)


def declared(handler: Any) -> Permission | None:
    spec = route_spec(handler)
    return spec.permission if spec else None
