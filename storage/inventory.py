"""The camera inventory: sites and cameras, validated input, listings without secrets."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import Invalid
from storage.db import by_id_or_name
from storage.keys import Keys
from storage.models import Camera, CameraKind, CameraState, Segment, Site
from storage.text import CleanText


def credentialed_url(url: str, username: str, password: str) -> str:
    """``url`` with ``username:password@`` inserted (percent-encoded), for the process that
    opens the stream (ffmpeg, OpenCV). Stored URLs never carry credentials; never log this one."""
    if not username:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class SiteSpec(CleanText):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    location: str = ""
    notes: str = ""


def check_stream_url(value: str) -> str:
    """An rtsp:// or http(s):// URL without credentials (or ""), else ValueError. Updates and
    new cameras both: a PATCH took any scheme (file://) and credentials in the URL."""
    if value:
        parts = urlsplit(value)
        if parts.scheme not in ("rtsp", "rtsps", "http", "https"):
            raise ValueError("must be an rtsp:// or http(s):// URL")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials: use username and password")
    return value


class CameraSpec(CleanText):
    """A camera as an administrator describes it (CLI, API, inventory files)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    site: str | None = Field(None, max_length=200)
    position: str = Field("", max_length=400)
    kind: CameraKind = CameraKind.FIXED
    main_url: str = Field("", max_length=1000)
    sub_url: str = Field("", max_length=1000)
    snapshot_url: str = Field("", max_length=1000)
    onvif_xaddr: str = Field("", max_length=1000)
    username: str = Field("", max_length=200)
    password: str = Field("", repr=False)
    enabled: bool = True
    recording: bool = True
    retention_days: int | None = Field(None, ge=1, le=3650)
    notes: str = ""
    lane: str = Field("", max_length=50)
    direction: str = Field("", max_length=50)
    ptz: bool = False
    extra: dict[str, Any] = {}

    @field_validator("main_url", "sub_url", "snapshot_url")
    @classmethod
    def _no_credentials_in_url(cls, value: str) -> str:
        return check_stream_url(value)


class CameraUpdate(CleanText):
    """Fields an update may change; absent means unchanged."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=200)
    site: str | None = Field(None, max_length=200)
    position: str | None = Field(None, max_length=400)
    kind: CameraKind | None = None
    main_url: str | None = Field(None, max_length=1000)
    sub_url: str | None = Field(None, max_length=1000)
    snapshot_url: str | None = Field(None, max_length=1000)
    onvif_xaddr: str | None = Field(None, max_length=1000)
    username: str | None = Field(None, max_length=200)
    password: str | None = Field(None, repr=False)
    enabled: bool | None = None
    recording: bool | None = None
    retention_days: int | None = Field(None, ge=1, le=3650)
    notes: str | None = None
    lane: str | None = Field(None, max_length=50)
    direction: str | None = Field(None, max_length=50)
    ptz: bool | None = None

    @field_validator("main_url", "sub_url", "snapshot_url")
    @classmethod
    def _no_credentials_in_url(cls, value: str | None) -> str | None:
        return check_stream_url(value) if value is not None else None


def parse_spec(model: type[BaseModel], data: Any, where: str = "") -> Any:
    """Validate ``data``; raise :class:`Invalid` naming each bad field (and where it came from)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise Invalid(f"{where + ': ' if where else ''}{fields}") from None


async def get_or_create_site(session: AsyncSession, name: str) -> Site:
    site = (await session.execute(select(Site).where(Site.name == name))).scalar_one_or_none()
    if site is None:
        site = Site(name=name)
        session.add(site)
        await session.flush()
    return site


async def add_site(session: AsyncSession, spec: SiteSpec) -> Site:
    site = await get_or_create_site(session, spec.name)
    site.location, site.notes = spec.location, spec.notes
    await session.flush()
    return site


async def list_sites(session: AsyncSession) -> list[Site]:
    return list((await session.execute(select(Site).order_by(Site.name))).scalars())


async def add_camera(session: AsyncSession, spec: CameraSpec, keys: Keys) -> Camera:
    if await session.scalar(select(func.count()).where(Camera.name == spec.name)):
        raise Invalid(f"a camera named {spec.name!r} already exists")
    fields = spec.model_dump(exclude={"site", "password"})
    cam = Camera(**fields, password_enc=keys.encrypt(spec.password))
    cam.kind = spec.kind.value
    cam.ptz = spec.ptz or spec.kind == CameraKind.PTZ
    cam.state = CameraState.STARTING.value if spec.enabled else CameraState.DISABLED.value
    if spec.site:
        cam.site_id = (await get_or_create_site(session, spec.site)).id
    session.add(cam)
    await session.flush()
    return cam


async def get_camera(session: AsyncSession, ref: int | str) -> Camera:
    """A camera by id or by name."""
    return await by_id_or_name(session, Camera, ref, "camera")


async def list_cameras(session: AsyncSession, site: str | None = None) -> list[Camera]:
    query = select(Camera).order_by(Camera.id)
    if site:
        query = query.join(Site).where(Site.name == site)
    return list((await session.execute(query)).scalars())


async def update_camera(session: AsyncSession, ref: int | str, update: CameraUpdate, keys: Keys) -> Camera:
    cam = await get_camera(session, ref)
    changes = update.model_dump(exclude_unset=True)
    if "password" in changes:
        cam.password_enc = keys.encrypt(changes.pop("password") or "")
    if "site" in changes:
        site = changes.pop("site")
        cam.site_id = (await get_or_create_site(session, site)).id if site else None
    if "main_url" in changes or "sub_url" in changes or "snapshot_url" in changes:
        CameraSpec(name=cam.name, **{k: v for k, v in changes.items() if k.endswith("_url") and v})
    for key, value in changes.items():
        setattr(cam, key, value.value if hasattr(value, "value") else value)
    if "enabled" in changes:
        cam.state = CameraState.STARTING.value if cam.enabled else CameraState.DISABLED.value
    await session.flush()
    return cam


async def remove_camera(session: AsyncSession, ref: int | str) -> Camera:
    """Remove a camera that has no recordings; one with footage can only be disabled."""
    cam = await get_camera(session, ref)
    if await session.scalar(select(func.count()).where(Segment.camera_id == cam.id)):
        raise Invalid(f"camera {cam.name!r} has recordings: disable it instead (footage is kept by retention rules)")
    await session.delete(cam)
    await session.flush()
    return cam


def camera_public(cam: Camera, site_name: str | None = None) -> dict[str, Any]:
    """A camera as listings show it: never the password, and URLs without credentials."""
    return {
        "id": cam.id,
        "name": cam.name,
        "site": site_name,
        "position": cam.position,
        "kind": cam.kind,
        "main_url": cam.main_url,
        "sub_url": cam.sub_url,
        "snapshot_url": cam.snapshot_url,
        "onvif_xaddr": cam.onvif_xaddr,
        "username": cam.username,
        "has_password": bool(cam.password_enc),
        "enabled": cam.enabled,
        "recording": cam.recording,
        "retention_days": cam.retention_days,
        "notes": cam.notes,
        "lane": cam.lane,
        "direction": cam.direction,
        "ptz": cam.ptz,
        "state": cam.state,
        "state_reason": cam.state_reason,
        "state_since_us": cam.state_since_us,
        "last_segment_us": cam.last_segment_us,
        "clock_offset_s": cam.clock_offset_s,
        "clock_flag": cam.clock_flag,
    }


async def site_names(session: AsyncSession) -> dict[int, str]:
    return {s.id: s.name for s in await list_sites(session)}
