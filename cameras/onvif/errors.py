"""ONVIF failures, told apart so an administrator knows what to do about each.

- :class:`cameras.CameraAuthError`: the camera refused these credentials (fix them).
- :class:`cameras.CameraUnavailable`: unreachable, refused or timed out (retry later).
- :class:`NotOnvifDevice`: something answers HTTP there, but not ONVIF SOAP (wrong address).
- :class:`OnvifFault`: the camera answered with a SOAP fault; its own text is kept.
- :class:`ServiceMissing`: the camera lacks a service we asked for (e.g. PTZ, events).

:func:`translate` turns whatever onvif-zeep-async, zeep and aiohttp raise into one of these.
Messages name the camera by its address without credentials (XAddrs never carry any).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import aiohttp
from zeep.exceptions import Fault, TransportError, XMLParseError, XMLSyntaxError

from cameras import CameraAuthError, CameraError, CameraUnavailable


class ClockUnreported(CameraError):
    """The camera answers GetSystemDateAndTime without a usable UTCDateTime (left out, or its
    fields unfilled): its clock cannot be read, though everything else may work."""


class NotOnvifDevice(CameraError):
    """The address answers, but not as an ONVIF device."""


class OnvifFault(CameraError):
    """The camera answered with a SOAP fault; ``subcodes`` are its ONVIF subcodes (``ter:...``)."""

    def __init__(self, message: str, subcodes: list[str] | None = None) -> None:
        super().__init__(message)
        self.subcodes = subcodes or []


class ServiceMissing(CameraError):
    """The camera does not offer the service an operation needs."""


def _subcodes(fault: Fault) -> list[str]:
    codes = fault.subcodes or []
    if not isinstance(codes, list):
        codes = [codes]
    return [getattr(c, "localname", None) or str(c) for c in codes]


def is_auth_fault(fault: Fault) -> bool:
    """Cameras say "not authorised" in many ways; the subcode first, then the text."""
    text = f"{fault.message or ''} {fault.code or ''}".lower()
    return any("notauthorized" in c.lower() for c in _subcodes(fault)) or "not authori" in text or (
        "auth" in text and "fail" in text)


def from_exception(exc: BaseException, where: str) -> CameraError:
    """The :class:`CameraError` for a failure talking to the camera at ``where``."""
    # onvif-zeep-async wraps some failures in ONVIFError; judge by the original.
    from onvif.exceptions import ONVIFAuthError, ONVIFError, ONVIFTimeoutError

    if isinstance(exc, CameraError):
        return exc
    if isinstance(exc, ONVIFAuthError):
        return CameraAuthError(f"{where}: the camera refused these credentials")
    if isinstance(exc, ONVIFTimeoutError):
        return CameraUnavailable(f"{where}: the camera did not answer in time; retry later")
    if isinstance(exc, ONVIFError) and exc.__cause__ is not None and exc.__cause__ is not exc:
        inner = from_exception(exc.__cause__, where)
        if type(inner) is not CameraError:
            return inner
    if isinstance(exc, ONVIFError) and "doesn`t support service" in str(exc):
        return ServiceMissing(f"{where}: the camera does not offer this service ({exc.reason.split(': ', 1)[-1]})")
    if isinstance(exc, Fault):
        if is_auth_fault(exc):
            return CameraAuthError(f"{where}: the camera refused these credentials")
        codes = _subcodes(exc)
        if any(c in ("ActionNotSupported", "NoSuchService") for c in codes):
            return ServiceMissing(f"{where}: the camera does not support this: {exc.message}")
        detail = f" ({', '.join(codes)})" if codes else ""
        return OnvifFault(f"{where}: the camera says: {exc.message or 'unspecified fault'}{detail}", codes)
    if isinstance(exc, TransportError):
        if exc.status_code == 401:
            return CameraAuthError(f"{where}: the camera refused these credentials")
        if exc.status_code in (502, 503, 504):
            return CameraUnavailable(f"{where}: the camera is busy or unavailable (HTTP {exc.status_code}); retry later")
        return NotOnvifDevice(
            f"{where}: this address answers HTTP but is not an ONVIF device (HTTP {exc.status_code}, no SOAP reply)")
    if isinstance(exc, XMLSyntaxError | XMLParseError):
        return NotOnvifDevice(f"{where}: this address answers HTTP but is not an ONVIF device (not SOAP XML)")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return CameraUnavailable(f"{where}: the camera did not answer in time; retry later")
    if isinstance(exc, aiohttp.ClientResponseError) and exc.status == 401:
        return CameraAuthError(f"{where}: the camera refused these credentials")
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerDisconnectedError | ConnectionError | OSError):
        return CameraUnavailable(f"{where}: cannot reach the camera ({_reason(exc)}); retry later")
    if isinstance(exc, aiohttp.ClientError):
        return CameraUnavailable(f"{where}: connection problem ({type(exc).__name__}); retry later")
    if isinstance(exc, ValueError | KeyError | AttributeError | TypeError):
        return NotOnvifDevice(f"{where}: this address is not an ONVIF device (its reply is not ONVIF SOAP: "
                              f"{type(exc).__name__})")
    return CameraError(f"{where}: {type(exc).__name__}: {exc}")


def _reason(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror.lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


@contextlib.contextmanager
def translate(where: str) -> Iterator[None]:
    """Re-raise any failure inside as the matching :class:`CameraError` (never CancelledError)."""
    try:
        yield
    except CameraError:
        raise
    except Exception as exc:  # noqa: BLE001 - sorted into our error kinds right here
        raise from_exception(exc, where) from exc
