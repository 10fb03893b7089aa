"""cameras: ONVIF, RTSP ingest, the ffmpeg recorder and its supervision, the simulated cameras.

May import storage only.
"""


class CameraError(Exception):
    """Root of the errors this package raises."""


class CameraUnavailable(CameraError):
    """The camera could not be reached: try again later."""


class CameraAuthError(CameraError):
    """The camera refused these credentials."""
