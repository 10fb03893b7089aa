"""The one settings object: typed, validated, loaded once at start-up and passed down.

Sources, later ones winning: ``config/settings.toml`` (the defaults shipped with the code),
``<data_dir>/settings.toml`` if it exists, any files named with ``--config``, then environment
variables ``CONTROLROOM_<KEY>`` / ``CONTROLROOM_<SECTION>__<KEY>``. An unknown or invalid key
stops start-up with a :class:`SettingsError` naming the key and the file it came from.

Nothing else in the project reads ``os.environ``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "config" / "settings.toml"
ENV_PREFIX = "CONTROLROOM_"


class SettingsError(Exception):
    """A settings file or variable is malformed; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    tls_cert: str = ""
    tls_key: str = ""
    # Stopping (SIGTERM/SIGINT): see docs/design/recording-store.md, "Processes and stopping".
    stop_timeout_s: float = Field(25, gt=0, le=600)
    handler_grace_s: float = Field(2, ge=0, le=60)
    force_stop_s: float = Field(5, gt=0, le=60)


class RecordingSettings(_Section):
    storage_root: str = ""
    segment_s: int = Field(30, ge=2, le=600)
    stall_timeout_s: float = Field(20, gt=0)
    backoff_initial_s: float = Field(1, gt=0)
    backoff_max_s: float = Field(5, gt=0)
    # ffmpeg is not (re)started with less free space than this (see config/settings.toml).
    min_free_bytes: int = Field(500_000_000, ge=0)
    # While the storage root is away ffmpeg writes here (a local disk). Empty: <data_dir>/spool.
    spool_dir: str = ""


class LiveSettings(_Section):
    linger_s: float = Field(5, ge=0, le=300)
    send_timeout_s: float = Field(10, gt=0, le=300)
    max_transcodes: int = Field(4, ge=0, le=64)
    # Live view of a recorded camera's main stream from the recorder's own pull (its ffmpeg's
    # second output), not a second camera session (docs/design/live-from-recorder.md).
    from_recorder: bool = True


class RetentionSettings(_Section):
    default_days: int = Field(31, ge=1, le=3650)
    free_space_floor_bytes: int = Field(5_000_000_000, ge=0)
    sweep_interval_s: float = Field(300, gt=0)


class CameraSettings(_Section):
    clock_threshold_s: float = Field(1.0, gt=0)
    clock_check_interval_s: float = Field(600, gt=0)
    # ONVIF (issue 3): per-request wait, multicast discovery interfaces (none: never multicast),
    # an optional unicast address to hear Hello/Bye on, and PullPoint event subscriptions.
    onvif_timeout_s: float = Field(10, gt=0)
    discovery_interfaces: list[str] = []
    discovery_listen: str = ""
    events: bool = True


class AnprSettings(_Section):
    # ANPR reads have their own retention, set separately from video (National ANPR Standards).
    retention_days: int = Field(90, ge=1, le=3650)
    sweep_interval_s: float = Field(3600, gt=0)
    # Frames read per second per ANPR camera; the stream is decoded in full, the rest dropped.
    sample_fps: float = Field(6.0, gt=0, le=30)
    # "uk" resolves character confusions by the UK formats; "generic" reads foreign plates too.
    mode: str = Field("uk", pattern="^(uk|generic)$")
    # Reads of all ANPR cameras running at once: bounds the CPU the ONNX reader takes.
    max_parallel_reads: int = Field(1, ge=1, le=16)
    # Frames that agree on a registration before the vehicle's read is committed (and alerted).
    agree_frames: int = Field(2, ge=1, le=10)
    # A vehicle not seen for this long has passed: its read is committed from what was seen.
    track_gap_s: float = Field(1.0, gt=0, le=30)
    # Per-frame reads below this confidence are ignored.
    min_confidence: float = Field(0.5, ge=0, le=1)
    # Frames larger than this are refused with a clear error (a 4K frame is 8.3 Mpx).
    max_frame_pixels: int = Field(16_000_000, gt=0)
    # Overview JPEGs are scaled down to this width (pixels) before storing.
    overview_width: int = Field(960, ge=160, le=4096)
    jpeg_quality: int = Field(85, ge=30, le=100)
    # Files (plate patch, overview) go under <data_dir>/anpr unless set.
    image_root: str = ""


class MqttSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    # Hotlist hits go to <topic_prefix>/anpr/hits, other alerts to <topic_prefix>/alerts/<kind>.
    topic_prefix: str = Field("controlroom", min_length=1)
    reconnect_initial_s: float = Field(1, gt=0)
    reconnect_max_s: float = Field(30, gt=0)


class SecuritySettings(_Section):
    # The administrator created on first run (when there are no users at all).
    admin_username: str = "admin"
    # File whose first line is that administrator's password. Empty: a one-time password is
    # generated and printed once on the console (never logged to the audit trail).
    admin_password_file: str = ""
    # Login sessions end after this long without a request, and after this long in any case.
    session_idle_s: float = Field(1800, gt=0)
    session_absolute_s: float = Field(43200, gt=0)
    # Consecutive failed logins that lock an account, and for how long.
    lockout_failures: int = Field(5, ge=1, le=100)
    lockout_s: float = Field(900, gt=0)
    # Failed logins from one address within the window before it is refused with 429.
    address_max_failures: int = Field(20, ge=1)
    address_window_s: float = Field(300, gt=0)
    # Roles that must log in with a TOTP code (they are made to enrol first).
    require_totp_for: tuple[str, ...] = ()
    password_min_length: int = Field(12, ge=8, le=256)
    # A session or token is re-read from the database at most this often per process (a user
    # disabled from the CLI loses access within this time; logout here is immediate).
    auth_cache_s: float = Field(5, ge=0, le=60)
    # How often the audit chain head is anchored outside the database (signed file, MQTT), and
    # at shutdown. Entries newer than the last anchor can be deleted unnoticed by someone who
    # also stops the service, so this bounds that window: at most five minutes (issue 11).
    audit_anchor_interval_s: float = Field(300, gt=0, le=300)
    # The signed anchor file. Must be outside data_dir (a copy or restore of the data directory
    # must not carry its own anchor). Empty: <data_dir>.audit-anchor.json beside the data dir.
    audit_anchor_file: str = ""


class EvidenceSettings(_Section):
    # Where evidence packages are written. Empty: <data_dir>/evidence.
    export_root: str = ""
    # One-time download links expire after this long.
    link_ttl_s: float = Field(86_400, gt=0)
    # A running export proves it is alive this often; one silent for stale_after_s is restarted.
    heartbeat_s: float = Field(2, gt=0)
    stale_after_s: float = Field(60, gt=0)
    # Free space kept on top of the estimated package size before an export may start.
    free_space_margin_bytes: int = Field(1_000_000_000, ge=0)
    # A request's hold is reviewed after this many days unless the request is closed sooner.
    hold_review_days: int = Field(90, ge=1, le=3650)
    # After closing, the (released) hold's review date by default.
    close_review_days: int = Field(365, ge=1, le=3650)
    max_window_hours: float = Field(24, gt=0)
    # Windows (camera x time) in one request: a request for more is a trawl, not a targeted
    # disclosure, and each window costs a catalogue query before the supervisor sees anything.
    max_windows: int = Field(16, ge=1, le=100)  # le: the API's schema cap (controlroom.api.evidence)


class HealthSettings(_Section):
    """Camera health and monitoring hours (docs/design/health-and-duty.md)."""

    # A recording camera off the air (offline or reconnecting) this long gets an automatic
    # "offline" fault; marked repaired when it records again.
    offline_after_s: float = Field(300, gt=0)
    # How often the health loop looks at every camera's state.
    check_interval_s: float = Field(30, gt=0, le=3600)
    # Picture checks: one snapshot per camera this often (0: off).
    picture_interval_s: float = Field(300, ge=0)
    # Cameras checked at once: a check mostly waits for the camera (connect, next keyframe).
    picture_parallel: int = Field(4, ge=1, le=32)
    # Consecutive failing checks before an automatic fault (and its alert) is opened: one bad
    # picture may be a bus parked in front or a headlight in the lens.
    picture_failures_to_fault: int = Field(2, ge=1, le=20)
    # Thresholds of cameras.picture (see there for what each measures).
    blur_ratio: float = Field(0.35, gt=0, lt=1)
    blur_min_variance: float = Field(40.0, ge=0)
    dark_mean: float = Field(35.0, ge=0, le=255)
    flat_cell_std: float = Field(4.0, gt=0)
    covered_fraction: float = Field(0.4, gt=0, le=1)
    covered_fraction_alone: float = Field(0.75, gt=0, le=1)
    moved_shift_fraction: float = Field(0.04, gt=0, le=1)
    moved_rotation_deg: float = Field(3.0, gt=0, le=180)
    moved_scale: float = Field(0.1, gt=0, le=10)
    moved_min_matches: int = Field(15, ge=3)
    # Staffed hours a week the control room aims for (the council's report: 116).
    target_hours: float = Field(116, ge=0, le=169)


class LawfulSettings(_Section):
    """RIPA authorisations and subject access requests (docs/design/lawful-use.md)."""

    # Alerts this long before a RIPA review date and before its expiry, and before a SAR's deadline.
    ripa_review_warn_days: float = Field(3, ge=0, le=90)
    ripa_expiry_warn_days: float = Field(7, ge=0, le=90)
    sar_remind_days: float = Field(7, ge=0, le=90)
    # The first review of a new authorisation (or after a renewal), unless the officer sets one.
    ripa_review_interval_days: int = Field(28, ge=1, le=366)
    # How often the reminders are checked.
    check_interval_s: float = Field(60, gt=0, le=86_400)
    # A SAR window's longest span, and when its hold is reviewed.
    sar_max_window_hours: float = Field(24, gt=0, le=744)
    sar_hold_review_days: int = Field(120, ge=1, le=3650)
    # SAR redaction (controlroom/redaction): where analyses and packages go (empty:
    # <data_dir>/redaction), whether plates are looked for, and the job runner's heartbeat.
    redaction_root: str = ""
    redaction_plates: bool = True
    redaction_heartbeat_s: float = Field(2, gt=0, le=60)


class ClusterSettings(_Section):
    # Many nodes on one PostgreSQL database and one shared storage root (docs/design/cluster.md).
    # Off: one machine, every camera recorded by this process (SQLite's only mode).
    enabled: bool = False
    # Empty: the id kept in <data_dir>/node-id (written at the first start).
    node_id: str = Field("", max_length=100)
    # What this node does: recorder, anpr, api, jobs (``serve --roles`` overrides).
    roles: str = "recorder,anpr,api,jobs"
    capacity: int = Field(100, ge=0, le=100_000)  # cameras this node records at most
    # ANPR cameras this node reads at most (an anpr node): reading costs a share of a core per
    # camera (anpr-reader.md), far more than recording one.
    anpr_capacity: int = Field(10, ge=0, le=10_000)
    heartbeat_s: float = Field(5, gt=0, le=60)
    # A recorder node's live relay (controlroom.relay): the other nodes fetch the live view of
    # the cameras it records from here, never from the camera. Bind it to the site's internal
    # network; port 0 takes any free port (tests). relay_advertise_host: the name the other
    # nodes use ("": relay_host, or this machine's name when relay_host is 0.0.0.0 or ::).
    relay_host: str = "127.0.0.1"
    relay_port: int = Field(8081, ge=0, le=65535)
    relay_advertise_host: str = ""
    # A lease not renewed for this long is free to take: three heartbeats, so one lost beat
    # (a busy database) does not move cameras; takeover within lease_ttl_s + heartbeat_s.
    lease_ttl_s: float = Field(15, gt=0, le=600)

    @model_validator(mode="after")
    def _ttl_covers_heartbeats(self) -> ClusterSettings:
        if self.lease_ttl_s < 2 * self.heartbeat_s:
            raise ValueError(f"cluster.lease_ttl_s ({self.lease_ttl_s}) must be at least two heartbeats "
                             f"({2 * self.heartbeat_s}): one late heartbeat would hand every camera over")
        return self


class Settings(_Section):
    data_dir: Path = Path("data")
    database_url: str = ""
    display_timezone: str = "Europe/London"
    http: HttpSettings = HttpSettings()
    recording: RecordingSettings = RecordingSettings()
    live: LiveSettings = LiveSettings()
    retention: RetentionSettings = RetentionSettings()
    cameras: CameraSettings = CameraSettings()
    anpr: AnprSettings = AnprSettings()
    mqtt: MqttSettings = MqttSettings()
    security: SecuritySettings = SecuritySettings()
    evidence: EvidenceSettings = EvidenceSettings()
    health: HealthSettings = HealthSettings()
    lawful: LawfulSettings = LawfulSettings()
    cluster: ClusterSettings = ClusterSettings()

    # Derived paths: one place that knows the layout of the data directory.
    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'controlroom.db'}"

    @property
    def storage_root(self) -> Path:
        return Path(self.recording.storage_root) if self.recording.storage_root else self.data_dir / "recordings"

    @property
    def spool_root(self) -> Path:
        return Path(self.recording.spool_dir) if self.recording.spool_dir else self.data_dir / "spool"

    @property
    def anpr_root(self) -> Path:
        return Path(self.anpr.image_root) if self.anpr.image_root else self.data_dir / "anpr"

    @property
    def evidence_root(self) -> Path:
        return Path(self.evidence.export_root) if self.evidence.export_root else self.data_dir / "evidence"

    @property
    def redaction_root(self) -> Path:
        return Path(self.lawful.redaction_root) if self.lawful.redaction_root else self.data_dir / "redaction"

    @property
    def key_file(self) -> Path:
        return self.data_dir / "secret.key"

    @property
    def audit_digest_dir(self) -> Path:
        """Daily digests written by versions before the anchor (still verified, no longer written)."""
        return self.data_dir / "audit-digests"

    @property
    def audit_anchor_file(self) -> Path:
        if self.security.audit_anchor_file:
            return Path(self.security.audit_anchor_file)
        resolved = self.data_dir.resolve()
        return resolved.parent / f"{resolved.name}.audit-anchor.json"

    @model_validator(mode="after")
    def _anchor_outside_data_dir(self) -> Settings:
        if self.audit_anchor_file.resolve().is_relative_to(self.data_dir.resolve()):
            raise ValueError(f"security.audit_anchor_file ({self.audit_anchor_file}) must be outside data_dir "
                             f"({self.data_dir}): the anchor is what a copy of the data directory cannot rewrite")
        return self

    @model_validator(mode="after")
    def _cluster_needs_postgresql(self) -> Settings:
        if self.cluster.enabled and not self.db_url.startswith("postgresql"):
            raise ValueError("cluster.enabled needs a PostgreSQL database_url: SQLite cannot be shared between "
                             "machines (docs/design/cluster.md)")
        return self

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with top-level or dotted (``"http.port"``) keys changed, validated again."""
        data = self.model_dump()
        for key, value in changes.items():
            _set_dotted(data, key.replace("__", "."), value)
        return Settings.model_validate(data)


def load_settings(
    data_dir: Path | None = None,
    config_files: list[Path] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Load and validate the settings. ``environ`` defaults to the process environment."""
    environ = dict(os.environ) if environ is None else environ
    layers: list[tuple[str, dict[str, Any]]] = [(str(DEFAULTS_FILE), _read_toml(DEFAULTS_FILE))]
    env_layer = _env_layer(environ)
    if data_dir is None and "data_dir" in env_layer:
        data_dir = Path(env_layer["data_dir"])
    effective_dir = data_dir or Path(layers[0][1].get("data_dir", "data"))
    local = effective_dir / "settings.toml"
    if local.is_file():
        layers.append((str(local), _read_toml(local)))
    for path in config_files or []:
        if not path.is_file():
            raise SettingsError(f"{path}: no such settings file")
        layers.append((str(path), _read_toml(path)))
    layers.append(("environment", env_layer))
    if data_dir is not None:
        layers.append(("--data-dir", {"data_dir": str(data_dir)}))

    merged: dict[str, Any] = {}
    for _, layer in layers:
        _deep_merge(merged, layer)
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            source = _source_of(err["loc"], layers)
            problems.append(f"{source}: {key}: {err['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None


def _env_layer(environ: dict[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for name, value in environ.items():
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            key = name[len(ENV_PREFIX):].lower().replace("__", ".")
            _set_dotted(layer, key, value)
    return layer


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[leaf] = value


def _deep_merge(into: dict[str, Any], layer: dict[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def _source_of(loc: tuple[Any, ...], layers: list[tuple[str, dict[str, Any]]]) -> str:
    for name, layer in reversed(layers):
        node: Any = layer
        for part in loc:
            if isinstance(node, dict) and part in node:
                node = node[part]
            else:
                break
        else:
            return name
    return layers[0][0]
