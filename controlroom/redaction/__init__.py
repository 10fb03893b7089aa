"""Redaction for subject access requests: other people's faces and vehicles' plates obscured
in the requester's footage, the requester left visible (docs/design/lawful-use.md).

``faces`` (the CenterFace detector), ``engine`` (decode, detect, track, obscure, encode),
``package`` (the signed package), ``runner`` (the background job).
"""


class RedactionError(Exception):
    """Redaction cannot be done; the message says why, for the supervisor."""
