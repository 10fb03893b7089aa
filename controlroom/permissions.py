"""Every right a route or command can require. Routes declare one with ``@requires(...)``.

Deny by default: a route without a declared permission is refused (and a test walks the router
to make sure none exists). ``PUBLIC`` is the explicit "no login needed" declaration.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
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


F = TypeVar("F", bound=Callable[..., Any])
ATTR = "__controlroom_permission__"


def requires(permission: Permission) -> Callable[[F], F]:
    """Declare the permission a handler needs."""

    def mark(handler: F) -> F:
        setattr(handler, ATTR, permission)
        return handler

    return mark


def declared(handler: Any) -> Permission | None:
    return getattr(handler, ATTR, None)
