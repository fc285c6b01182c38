"""AES-256-GCM payload encryption (``temporalio.converter.PayloadCodec``).

With PAYLOAD_KEYS set, every payload a client or worker sends to the server
(workflow and activity inputs and results, signals, updates, queries, memos,
failure details) is encrypted with the first key; the server's database holds
only ciphertext. Each encrypted payload carries its key ID in its metadata, so
keys rotate: put the new key first and keep the old ones after it until no
running workflow or retained history uses them. Payloads without our encoding
(histories recorded before encryption was turned on) pass through unchanged.

Format of an encrypted payload (the same as Temporal's encryption samples in
Go, TypeScript and Python, so their codec servers interoperate):
metadata ``encoding: binary/encrypted``, ``encryption-key-id: <ID>``; data
``nonce (12 random bytes) || AES-GCM ciphertext and tag`` of the serialized
``Payload``, with the key ID as associated data so a payload cannot be passed
off under another key's ID.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_KEY = "encryption-key-id"
NONCE_BYTES = 12


class PayloadDecryptionError(ValueError):
    """An encrypted payload cannot be decrypted: its key ID is not configured, or
    the ciphertext or its key ID was altered."""


class AesGcmCodec(PayloadCodec):
    """Encrypts with the first of ``keys``, decrypts with any of them.

    Without keys it encrypts nothing and passes plaintext through, but an
    encrypted payload fails to decode with a message that says to set
    PAYLOAD_KEYS (rather than the converter's "unknown encoding").

    Args:
        keys: ``(key ID, 32-byte key)`` pairs, the encrypting key first (see
            ``settings.codec.parse_payload_keys``); may be empty.
    """

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        super().__init__()
        self.key_id = keys[0][0] if keys else None
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each payload serialized and encrypted with the first key; unchanged
        without keys."""
        return [self.encrypt(p) for p in payloads] if self.key_id else list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each encrypted payload decrypted; others (plaintext) unchanged.

        Raises:
            PayloadDecryptionError: unknown key ID, or altered ciphertext.
        """
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        """One payload encrypted with the first key.

        Raises:
            ValueError: the codec has no key.
        """
        if self.key_id is None:
            raise ValueError("no key to encrypt with: PAYLOAD_KEYS is unset")
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.key_id].encrypt(
            nonce, payload.SerializeToString(), self.key_id.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID_KEY: self.key_id.encode()},
                       data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        """One payload decrypted (unchanged when it is not ours).

        Raises:
            PayloadDecryptionError: unknown key ID, or altered ciphertext.
        """
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID_KEY, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if not self._ciphers:
            raise PayloadDecryptionError(
                f"payload encrypted with key {key_id!r}, and PAYLOAD_KEYS is unset: set it "
                "to the worker's keys")
        if cipher is None:
            raise PayloadDecryptionError(
                f"payload encrypted with key {key_id!r}, which PAYLOAD_KEYS does not hold "
                f"(it holds {', '.join(sorted(self._ciphers))})")
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:],
                                   key_id.encode())
        except InvalidTag:
            raise PayloadDecryptionError(
                f"payload encrypted with key {key_id!r} does not authenticate: altered, "
                "or the key under that ID changed") from None
        return Payload.FromString(plain)
