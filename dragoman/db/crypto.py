"""Encryption of text at rest: AES-256-GCM under named keys.

A `Keyring` holds one or more 32-byte keys, each with a short id. The first
(primary) key encrypts; every key decrypts, so keys can rotate: put the new
key first, restart, run `dragoman keys rotate` to re-encrypt old rows, then
drop the old key. A stored value is `nonce (12 bytes) || ciphertext || tag`,
with the key id in a column beside it. The associated data binds a value to
its row and column, so ciphertexts cannot be swapped between rows unnoticed.

Keys come from `database.encryption_keys` (an environment secret) or
`database.encryption_keys_file`, as `id:base64` entries, never from the repo.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dragoman import keyfiles
from dragoman.errors import DragomanError, FailedPrecondition

log = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")


class DecryptionError(DragomanError):
    """A value could not be decrypted: unknown key id, wrong key or tampering."""


class Keyring:
    """Named AES-256-GCM keys; the first one encrypts."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise FailedPrecondition("no encryption key configured")
        self._keys: dict[str, AESGCM] = {}
        for key_id, key in keys:
            if not KEY_ID.fullmatch(key_id):
                raise FailedPrecondition(
                    f"encryption key id {key_id!r} must be 1 to 32 letters, digits, '.', '_' or '-'")
            if len(key) != KEY_BYTES:
                raise FailedPrecondition(
                    f"encryption key {key_id!r} has {len(key)} bytes; AES-256 needs {KEY_BYTES}")
            if key_id in self._keys:
                raise FailedPrecondition(f"encryption key id {key_id!r} is listed twice")
            self._keys[key_id] = AESGCM(key)
        self.primary_id = keys[0][0]

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    @classmethod
    def parse(cls, text: str, source: str = "encryption keys") -> Keyring:
        """Keys from `id:base64` entries separated by commas or new lines."""
        keys = []
        for entry in re.split(r"[,\n]", text):
            entry = entry.strip()
            if not entry or entry.startswith("#"):
                continue
            key_id, sep, encoded = entry.partition(":")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if not sep or not key:
                raise FailedPrecondition(f"{source}: each key must be `id:base64`, got {key_id!r}...")
            keys.append((key_id.strip(), key))
        return cls(keys)

    def encrypt(self, plaintext: str, associated: bytes) -> tuple[str, bytes]:
        """(key id, nonce || ciphertext) of `plaintext` under the primary key."""
        return self.seal(plaintext.encode(), associated)

    def decrypt(self, key_id: str, blob: bytes, associated: bytes) -> str:
        return self.unseal(key_id, blob, associated).decode()

    def seal(self, plaintext: bytes, associated: bytes) -> tuple[str, bytes]:
        """`encrypt` for bytes."""
        return self.primary_id, seal(self._keys[self.primary_id], plaintext, associated)

    def unseal(self, key_id: str, blob: bytes, associated: bytes) -> bytes:
        """`decrypt` for bytes."""
        aead = self._keys.get(key_id)
        if aead is None:
            raise DecryptionError(f"no encryption key with id {key_id!r} is configured")
        try:
            return unseal(aead, blob, associated)
        except DecryptionError:
            raise DecryptionError(f"value under key {key_id!r} does not decrypt") from None


def seal(aead: AESGCM, plaintext: bytes, associated: bytes) -> bytes:
    """nonce || ciphertext || tag of `plaintext` (a fresh random nonce each time)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, plaintext, associated)


def unseal(aead: AESGCM, blob: bytes, associated: bytes) -> bytes:
    """The plaintext of a `seal` value; DecryptionError for a wrong key or tampering."""
    try:
        return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], associated)
    except (InvalidTag, ValueError):
        raise DecryptionError("the value does not decrypt with this key") from None


def new_key_entry(key_id: str = "") -> str:
    """A fresh `id:base64` entry (`dragoman keys generate`)."""
    key_id = key_id or f"k{secrets.token_hex(4)}"
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def load(keys: str, keys_file: str, generated_file: Path | None = None) -> Keyring:
    """The keyring from settings: `keys`, else `keys_file`, else (embedded
    default only) `generated_file`, created with a fresh key when missing."""
    if keys.strip():
        return Keyring.parse(keys, "database.encryption_keys")
    if keys_file:
        path = Path(keys_file)
        try:
            return Keyring.parse(path.read_text(), str(path))
        except FileNotFoundError:
            raise FailedPrecondition(f"encryption key file {path} does not exist") from None
    if generated_file is None:
        raise FailedPrecondition(
            "no encryption key for text at rest: set DRAGOMAN_DATABASE_ENCRYPTION_KEYS or "
            "DRAGOMAN_DATABASE_ENCRYPTION_KEYS_FILE (`dragoman keys generate` makes one)")
    keyfiles.create(generated_file, lambda: new_key_entry("k1"))
    log.warning("encrypting text with the generated key file %s; set "
                "DRAGOMAN_DATABASE_ENCRYPTION_KEYS in production", generated_file)
    return Keyring.parse(generated_file.read_text(), str(generated_file))
