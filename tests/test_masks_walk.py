"""The privacy-mask walk (issue 15, item 1, "Done when"): generated from the router, like the
disclosure walk, so that a new route that hands out pictures cannot escape it.

In the disclosure walk's world (tests/disclosure_world.py) camera Alpha gets a privacy mask (a
pentagon, set through the API by an administrator). Then every disclosing GET route (the
disclosure walk's ``URLS``: every route that can hand out footage or images declares
``discloses=``, which tests/test_disclosure.py enforces) and the mask editor's snapshot is
called for camera Alpha:

- by a user without ``unmask``: every picture in the answer (a JPEG, a PNG, frames of an MP4, of
  the live stream's fragments, of the videos in an evidence package) is decoded with OpenCV and
  the polygon's inside must be uniform fill (standard deviation about 0, black);
- by a supervisor (who holds ``unmask``), where the route is theirs to call (not the police's
  packages, masked for whoever downloads them): the same place shows the picture (it varies).

A route whose answer holds a picture but that does not declare ``pixels=`` fails the walk, as
does a route that declares it but whose answer the walk could not decode.
"""

from __future__ import annotations

import asyncio
import io
import json
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from disclosure_world import World, world
from evidence_media import make_segments
from sqlalchemy import select
from test_disclosure import URLS, fetch, get_routes, url_for, walker

from controlroom.context import SESSIONS, SETTINGS
from controlroom.permissions import Permission, Pixels, role_permissions, route_spec
from storage import masks
from storage.anpr.images import resolve_image
from storage.anpr.models import AnprRead
from storage.audit import AuditEntry

PENTAGON = [[0.2, 0.1], [0.6, 0.08], [0.75, 0.35], [0.45, 0.6], [0.15, 0.45]]  # clear of a still's stamp
EDITOR_SNAPSHOT = "/api/v1/cameras/{camera}/masks/snapshot.jpg"
ERODE_PX = 5  # codecs bleed a few pixels across the polygon's edge
UNIFORM_STD = 4.0  # inside a painted mask, after JPEG or H.264
FILL_MAX = 24  # black, after the codec
PICTURE_STD = 12.0  # the same place unmasked: colour bars, testsrc2, noise
LIVE_MESSAGES = 60


def inside(frame: np.ndarray) -> np.ndarray:
    """The pixels of ``frame`` inside the pentagon, ERODE_PX in from its edge."""
    h, w = frame.shape[:2]
    area = np.zeros((h, w), np.uint8)
    pts = np.array([[round(x * (w - 1)), round(y * (h - 1))] for x, y in PENTAGON], np.int32)
    cv2.fillPoly(area, [pts], 255)
    area = cv2.erode(area, np.ones((2 * ERODE_PX + 1, 2 * ERODE_PX + 1), np.uint8))
    return frame[area > 0]


def video_frames(data: bytes, suffix: str = ".mp4", limit: int = 30) -> list[np.ndarray]:
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(data)
        f.flush()
        cap = cv2.VideoCapture(f.name)
        frames = []
        while len(frames) < limit:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        cap.release()
    return frames


def pictures(body: bytes) -> list[np.ndarray]:
    """Every picture the walk finds in an answer (none: it holds no pixels)."""
    if body[:3] == b"\xff\xd8\xff" or body[:8] == b"\x89PNG\r\n\x1a\n":
        frame = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        return [frame] if frame is not None else []
    if body[4:8] in (b"ftyp", b"moov", b"moof", b"styp"):
        return video_frames(body)
    if body[:4] == b"PK\x03\x04":
        found = []
        with zipfile.ZipFile(io.BytesIO(body)) as z:
            for name in z.namelist():
                if name.endswith((".mp4", ".mkv")):
                    found += video_frames(z.read(name), Path(name).suffix, limit=10)
                elif name.endswith((".jpg", ".png")):
                    found += pictures(z.read(name))
        return found
    return []


async def live_body(w: World, url: str, headers: dict[str, str]) -> bytes:
    """The live stream as one fragmented MP4: its init segment and fragments for a while."""
    chunks: list[bytes] = []
    async with asyncio.timeout(60), w.client.ws_connect(url, headers=headers) as ws:
        first = json.loads(await ws.receive_str(timeout=30))
        assert first["type"] == "init", first
        while len(chunks) < LIVE_MESSAGES:
            msg = await ws.receive(timeout=30)
            if msg.type.name != "BINARY":
                break
            chunks.append(msg.data)
    return b"".join(chunks)


async def answer(w: World, canonical: str, who, via: str = "session") -> tuple[int, bytes]:
    url = (await url_for(w, canonical, "A", via) if canonical in URLS
           else canonical.replace("{camera}", str(w.cam["A"])))
    headers = {} if route_of(w, canonical).permission is Permission.PUBLIC else who.headers(via)
    if canonical.endswith("/live"):
        return 101, await live_body(w, url, headers)
    return await fetch(w, canonical, url, headers)


def route_of(w: World, canonical: str):
    return dict(get_routes(w.app))[canonical]


async def real_anpr_pictures(w: World) -> None:
    """The world's ANPR pictures are placeholders: make camera Alpha's real, textured JPEGs."""
    rng = np.random.default_rng(15)
    async with w.app[SESSIONS]() as session:
        reads = (await session.execute(select(AnprRead).where(AnprRead.camera_id == w.cam["A"]))).scalars().all()
    root = w.app[SETTINGS].anpr_root
    for read in reads:
        for rel, size in ((read.overview_path, (480, 640)), (read.plate_path, (60, 200))):
            noise = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            resolve_image(root, rel).write_bytes(cv2.imencode(".jpg", noise)[1].tobytes())


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[Path]:
    return make_segments(tmp_path_factory.mktemp("media"), 2)


def pixel_routes(w: World) -> dict[str, object]:
    return {c: s for c, s in get_routes(w.app) if s.pixels is not None}


async def set_mask(w: World, polygons: list = [PENTAGON]) -> None:  # noqa: B006 - read only
    resp = await w.client.put(f"/api/v1/cameras/{w.cam['A']}/masks", json={
        "polygons": polygons, "reason": "overlooks the flats' windows"},
        headers=w.users["administrator"].headers("session"))
    assert resp.status == 200, await resp.text()


async def set_mask_on_camera(w: World) -> None:
    """The mask set through the API, and taken by the camera (ONVIF Media2): it paints it now."""
    await set_mask(w)
    for _ in range(200):
        async with w.app[SESSIONS]() as session:
            row = await masks.get(session, w.cam["A"])
        if row.applied_by == masks.CAMERA:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the camera did not take the mask: {row.camera_state}")


@pytest.mark.parametrize("painter", ["service", "camera"])
async def test_every_route_that_returns_pixels_masks_them(aiohttp_client, settings, tmp_path, sources, painter):
    """The mask is set before the world's evidence is exported: its packages carry it. Camera
    Alpha is masked by the service, or paints the mask itself (ONVIF Media2): then its live
    stream is copied as the camera sends it (masked at source), and its recorded footage, all
    older than the push, is masked by the service."""
    prepare = set_mask_on_camera if painter == "camera" else set_mask
    async with world(aiohttp_client, settings, tmp_path, sources, prepare=prepare,
                     camera_painted=painter == "camera") as w:
        await real_anpr_pictures(w)
        declared = pixel_routes(w)
        walk = sorted(set(URLS) | set(declared))
        assert EDITOR_SNAPSHOT in declared
        problems: list[str] = []
        checked = 0
        unmasked_only: set[str] = set()
        for canonical in walk:
            spec = route_of(w, canonical)
            who = w.users["police"] if spec.permission is Permission.PUBLIC else walker(w, spec.permission)
            status, body = await answer(w, canonical, who)
            what = f"GET {canonical} as {who.role}"
            if status not in (101, 200, 206):
                problems.append(f"{what}: {status} {body[:200]!r}")
                continue
            frames = await asyncio.to_thread(pictures, body)
            if frames and Permission.UNMASK in role_permissions(who.role):
                # Only users with unmask can call it (the SAR routes): it declares pixels= all the
                # same, so that the mechanism covers anyone who gets its right later.
                if spec.pixels is None:
                    problems.append(f"{what}: answers with pictures but declares no pixels= (controlroom.masking)")
                unmasked_only.add(canonical)
                continue
            if frames and spec.pixels is None:
                problems.append(f"{what}: answers with pictures but declares no pixels= (controlroom.masking)")
                continue
            if spec.pixels is None:
                continue
            if not frames:
                problems.append(f"{what}: declares pixels= but the walk decoded no picture from its answer")
                continue
            for n, frame in enumerate(frames):
                region = inside(frame)
                if region.std() > UNIFORM_STD or region.mean() > FILL_MAX:
                    problems.append(f"{what}: picture {n} of {len(frames)} shows the masked area "
                                    f"(std {region.std():.1f}, mean {region.mean():.1f})")
                    break
            checked += 1
            # The same place for a supervisor, who holds unmask: the picture itself. (Not the live
            # pictures of a camera that paints its masks: it sends no unmasked picture to anyone.)
            supervisor = w.users["supervisor"]
            at_source = painter == "camera" and spec.pixels is Pixels.LIVE
            if spec.permission in role_permissions("supervisor") - {Permission.AUTHENTICATED, Permission.PUBLIC} \
                    and not at_source:
                status, body = await answer(w, canonical, supervisor)
                frames = await asyncio.to_thread(pictures, body)
                if not frames or max(inside(f).std() for f in frames) < PICTURE_STD:
                    problems.append(f"GET {canonical} as supervisor (unmask): the masked area is not shown "
                                    f"({status}, {len(frames)} pictures)")
        assert not problems, "\n".join(problems)
        assert checked + len(unmasked_only) == len(declared) and checked >= 10, (checked, sorted(declared))
        async with w.app[SESSIONS]() as session:  # live: a masked transcode, or the camera's stream copied
            starts = [json.loads(e.details) for e in (await session.scalars(select(AuditEntry).where(
                AuditEntry.action == "live.start", AuditEntry.target == f"camera:{w.cam['A']}"))).all()]
        without_unmask = [d["masked"] for d in starts if d.get("masked") is not None]
        assert without_unmask and set(without_unmask) == ({False, True} if painter == "service" else {False}), starts
        # The masks change: a package painted with the old ones is refused until exported again.
        await set_mask(w, [PENTAGON, [[0.8, 0.8], [0.95, 0.8], [0.9, 0.95]]])
        status, body = await answer(w, "/api/v1/evidence/requests/{id}/package", w.users["police"])
        assert status == 409 and b"exported again" in body, (status, body[:300])


async def test_pixel_routes_are_the_picture_routes(settings):
    """The routes declared pixels=, by their kind (the walk above proves each one masks)."""
    from controlroom.app import create_app
    app = create_app(settings, record=False)
    kinds = {r.resource.canonical: route_spec(r.handler).pixels for r in app.router.routes()
             if r.method == "GET" and route_spec(r.handler) and route_spec(r.handler).pixels}
    assert kinds.get("/api/v1/cameras/{camera}/live") is Pixels.LIVE
    assert kinds.get("/api/v1/cameras/{camera}/playback/stream.mp4") is Pixels.RECORDED
