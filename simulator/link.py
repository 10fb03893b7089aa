"""What the ONVIF side of the simulator knows of the RTSP side: declared once, here.

:class:`simulator.Simulation` (the RTSP cameras, ``__init__.py``) starts
:class:`simulator.onvif.OnvifSimulator` for its cameras and hands it itself; the ONVIF side
reads each :class:`SimCamera`, writes back its ``onvif_xaddr``, follows the simulation's
clock offsets and moves its PTZ pictures, through :class:`SimulationLink` only. So the ONVIF
side never imports the simulation, and the one import between them goes one way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class SimCamera:
    """One simulated camera as the RTSP server serves it (``Simulation.cameras``)."""

    name: str
    kind: str  # "fixed" | "ptz" | "anpr"
    site: str
    main_url: str
    sub_url: str
    username: str
    password: str = field(repr=False)
    lane: str = ""
    direction: str = ""
    position: str = ""
    onvif_xaddr: str = ""  # filled by the ONVIF side once it serves the camera
    live: bool = False  # encoded live with the wall clock burnt in
    port: int = 0
    clock_offset_s: float = 0.0  # what the camera's own clock is off by (the ONVIF side reports it)
    mode: str = "clip"  # how the server makes the picture: clip | live | ptz | anpr
    main_codec: str = "h264"  # "h264" | "h265" (Simulation's codecs=)
    sub_codec: str = "h264"
    masks: str = ""  # ONVIF Media2 privacy masks: "" (none), "media2" (painted), "refuse" (CreateMask faults)

    @property
    def ptz(self) -> bool:
        return self.kind == "ptz"

    def spec(self) -> dict[str, Any]:
        """A dict accepted by ``storage.inventory.CameraSpec``."""
        spec = {
            "name": self.name, "site": self.site, "kind": self.kind,
            "main_url": self.main_url, "sub_url": self.sub_url,
            "username": self.username, "password": self.password,
            "lane": self.lane, "direction": self.direction, "position": self.position,
            "ptz": self.ptz,
        }
        if self.onvif_xaddr:
            spec["onvif_xaddr"] = self.onvif_xaddr
        return spec


class SimulationLink(Protocol):
    """The running simulation as the ONVIF side uses it (``Simulation`` is the one there is).

    Positions are ONVIF generic space: pan and tilt -1..1, zoom 0..1; velocities are the same
    units at the rates of ``simulator.onvif.PTZ_RATES``.
    """

    work_dir: Path  # the simulation's folder: a camera's ONVIF identity is derived from it
    cameras: list[SimCamera]
    clock_offsets_s: dict[str, float]  # camera name -> its clock minus true time, seconds

    async def set_ptz(self, name: str, pan: float, tilt: float, zoom: float) -> None: ...

    async def set_masks(self, name: str, polygons: list[list[list[float]]]) -> None:
        """Paint these privacy masks (normalised 0..1, top left) into the camera's RTSP streams."""
        ...

    async def get_ptz(self, name: str) -> tuple[float, float, float]: ...

    async def move_ptz(self, name: str, vpan: float, vtilt: float, vzoom: float) -> None:
        """Continuous move: the position integrates this velocity until (0, 0, 0)."""
        ...
