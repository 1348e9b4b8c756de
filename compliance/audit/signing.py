"""Ed25519 signing of audit checkpoints, with a key that never lives in the database.

Anyone who can write to the database can rewrite events and recompute every hash; only a signature
made with a key kept elsewhere (a file, an environment variable, a KMS) tells a genuine checkpoint
from a forged one. ``Signer`` is the small interface a KMS plugs into.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from compliance.errors import InvalidInput

KEY_FILE_ENV = "COMPLIANCE_AUDIT_KEY_FILE"
KEY_ENV = "COMPLIANCE_AUDIT_KEY"


@runtime_checkable
class Signer(Protocol):
    """Signs checkpoint statements. ``public_key`` is the raw 32-byte Ed25519 public key."""

    @property
    def public_key(self) -> bytes:
        """The raw Ed25519 public key a verifier checks signatures with."""

    def sign(self, message: bytes) -> bytes:
        """The signature of ``message``."""


class Ed25519Signer:
    """A signer holding the private key in this process (from a file or the environment)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> Ed25519Signer:
        """A signer with a new random key."""
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        """The raw Ed25519 public key a verifier checks signatures with."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, message: bytes) -> bytes:
        """The signature of ``message``."""
        return self._key.sign(message)

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS #8 PEM, for a key file."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def fingerprint(public_key: bytes) -> str:
    """A short, stable name for a public key, stored with every checkpoint it signs."""
    return "ed25519:" + hashlib.sha256(public_key).hexdigest()[:32]


def public_pem(public_key: bytes) -> str:
    return (
        Ed25519PublicKey.from_public_bytes(public_key)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _decode(field: str, data: bytes) -> bytes:
    """PEM as is; anything else is base64 (of PEM or of the raw 32-byte key)."""
    data = data.strip()
    if data.startswith(b"-----BEGIN"):
        return data
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(field, "is neither PEM nor base64") from None


def private_key_from(field: str, data: bytes) -> Ed25519Signer:
    raw = _decode(field, data)
    try:
        if raw.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(raw, password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(raw)
    except (ValueError, TypeError):
        raise InvalidInput(field, "is not an unencrypted Ed25519 private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(field, "is not an Ed25519 private key")
    return Ed25519Signer(key)


def public_key_from(field: str, data: bytes) -> bytes:
    """The raw public key from a public key (PEM or base64) or from a private key."""
    raw = _decode(field, data)
    if b"PRIVATE KEY" in raw:
        return private_key_from(field, raw).public_key
    try:
        if raw.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(raw)
            if not isinstance(key, Ed25519PublicKey):
                raise InvalidInput(field, "is not an Ed25519 public key")
            return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return Ed25519PublicKey.from_public_bytes(raw).public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    except ValueError:
        raise InvalidInput(field, "is not an Ed25519 public key") from None


def _read(field: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(field, f"cannot read {path!r}: {exc.strerror}") from None


def configured_signer(key_file: str | None = None) -> Signer | None:
    """The key from ``key_file``, else ``$COMPLIANCE_AUDIT_KEY_FILE``, else the key in
    ``$COMPLIANCE_AUDIT_KEY``; None when none is configured."""
    if key_file:
        return private_key_from("--key-file", _read("--key-file", key_file))
    env_file = os.environ.get(KEY_FILE_ENV)
    if env_file:
        return private_key_from(KEY_FILE_ENV, _read(KEY_FILE_ENV, env_file))
    env_key = os.environ.get(KEY_ENV)
    if env_key:
        return private_key_from(KEY_ENV, env_key.encode())
    return None


def read_public_key(path: str) -> bytes:
    return public_key_from("--public-key", _read("--public-key", path))


def generate_key_file(path: str) -> Ed25519Signer:
    """A new key pair; the private key is written to a new file readable by its owner only."""
    signer = Ed25519Signer.generate()
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise InvalidInput(
            "--out", f"{path!r} already exists; a key is never overwritten"
        ) from None
    except OSError as exc:
        raise InvalidInput("--out", f"cannot create {path!r}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(signer.private_pem())
        f.flush()
        os.fsync(f.fileno())
    return signer


def signature_valid(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
