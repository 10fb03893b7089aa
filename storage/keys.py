"""The service's one secret key file: encryption of camera passwords, and signing.

The file (JSON, mode 0600) is generated on first run. It holds a Fernet key (AES-128-CBC with
HMAC-SHA256, from ``cryptography``) for secrets at rest, and an Ed25519 private key for signing
evidence manifests and audit anchors. The audit chain's HMAC key is derived from the Ed25519
seed with HKDF-SHA256 (its own ``info`` label, so it is independent of the signing key in use):
it lives wherever the key file lives, never in the database, and an existing key file needs no
rewrite to gain it (a rewrite of this file that failed or raced another process could lose the
Fernet key, and with it every camera password). No key, nor anything decrypted with them, is
ever logged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from storage import StorageError


class KeyFileError(StorageError):
    """The key file is unreadable, malformed or too widely readable."""


# The HKDF label of the audit chain's MAC key: changing it would make every keyed entry fail.
AUDIT_MAC_INFO = b"controlroom audit chain HMAC-SHA-256 v1"


def derive_audit_mac_key(signing: Ed25519PrivateKey) -> bytes:
    """The 32-byte HMAC key of the audit chain, derived from the signing key's seed."""
    seed = signing.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=AUDIT_MAC_INFO).derive(seed)


@dataclass(frozen=True)
class Keys:
    fernet: Fernet
    signing: Ed25519PrivateKey

    @property
    def audit_mac_key(self) -> bytes:
        """The audit chain's HMAC-SHA-256 key (storage.audit); not stored anywhere."""
        return derive_audit_mac_key(self.signing)

    def encrypt(self, secret: str) -> str:
        return self.fernet.encrypt(secret.encode()).decode() if secret else ""

    def decrypt(self, token: str) -> str:
        if not token:
            return ""
        try:
            return self.fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise KeyFileError("a stored secret does not decrypt with this key file") from None

    def sign(self, data: bytes) -> bytes:
        return self.signing.sign(data)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing.public_key()

    def public_key_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def public_key_fingerprint(self) -> str:
        """SHA-256 of the raw 32-byte public key, hex, as shown in the UI and README."""
        raw = self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return hashlib.sha256(raw).hexdigest()


def load_or_create_keys(path: Path) -> Keys:
    """Read the key file, creating it (mode 0600, never overwritten) when missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        body = json.dumps(
            {"fernet": Fernet.generate_key().decode(), "ed25519": base64.b64encode(seed).decode()}
        ).encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first; read theirs
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(f"{path}: key file is readable by others (mode {mode:o}); chmod 600 it")
    try:
        data = json.loads(path.read_bytes())
        return Keys(
            fernet=Fernet(data["fernet"].encode()),
            signing=Ed25519PrivateKey.from_private_bytes(base64.b64decode(data["ed25519"])),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"{path}: malformed key file ({type(exc).__name__})") from None
