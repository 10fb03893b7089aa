"""ONVIF, the client side: discovery, adoption, PTZ, camera clocks and events.

Modules: :mod:`.discovery` (WS-Discovery probe and Hello/Bye listener), :mod:`.session` (one
conversation with a camera over onvif-zeep-async), :mod:`.adopt`, :mod:`.ptz`, :mod:`.clock`,
:mod:`.events`, :mod:`.errors`. Design notes: docs/design/onvif.md.
"""

from cameras.onvif.errors import NotOnvifDevice, OnvifFault, ServiceMissing

__all__ = ["NotOnvifDevice", "OnvifFault", "ServiceMissing"]
