"""Settings of payload encryption: the keys and the remote codec server."""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from settings.base import EnvSettings, load

KEY_BYTES = 32  # AES-256
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def parse_payload_keys(value: str) -> list[tuple[str, bytes]]:
    """``"id1:BASE64,id0:BASE64"`` -> ``[("id1", key1), ("id0", key0)]``, in order
    (the first encrypts, every one decrypts).

    Each key is 32 bytes (AES-256) in standard base64 (``openssl rand -base64 32``);
    each ID is 1-64 of ``A-Z a-z 0-9 . _ -`` and unique.

    Raises:
        ValueError: the value breaks one of those rules; the message names the
            entry by its position and ID, never the key.
    """
    keys: list[tuple[str, bytes]] = []
    for n, entry in enumerate((e.strip() for e in value.split(",") if e.strip()), 1):
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not _KEY_ID.fullmatch(key_id):
            raise ValueError(f"entry {n} is not ID:BASE64KEY with an ID of letters, digits, "
                             "'.', '_' or '-'")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"key {key_id!r} is not base64") from None
        if len(key) != KEY_BYTES:
            raise ValueError(f"key {key_id!r} has {len(key)} bytes, AES-256 needs {KEY_BYTES} "
                             "(make one with `openssl rand -base64 32`)")
        if any(key_id == known for known, _ in keys):
            raise ValueError(f"key ID {key_id!r} is given twice")
        keys.append((key_id, key))
    if not keys:
        raise ValueError("no key given; unset PAYLOAD_KEYS to store payloads unencrypted")
    return keys


class CodecSettings(EnvSettings):
    """PAYLOAD_KEYS (unset: payloads are stored as plain JSON) and the codec server
    that lets the web UI show decoded payloads."""

    payload_keys: SecretStr | None = Field(
        None, description="AES-256-GCM payload keys `ID:BASE64,ID:BASE64` (the first "
        "encrypts, all decrypt; unset: payloads unencrypted)")
    codec_server_bind: str = Field(
        "127.0.0.1:8081", description="HOST:PORT the codec server (`starter.py "
        "codec-server`) listens on")
    codec_server_url: str = Field(
        "http://localhost:8081", description="the codec server's URL as the web UI's "
        "browser reaches it (`dev-server --ui-codec-endpoint`)")
    codec_server_token: SecretStr | None = Field(
        None, description="bearer token the codec server requires (unset: none)")
    codec_server_origins: list[str] = Field(
        default_factory=list, description="JSON list of web UI origins allowed by CORS "
        "(default: the origin of TEMPORAL_UI_URL)")

    @field_validator("payload_keys")
    @classmethod
    def _check_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():
            parse_payload_keys(value.get_secret_value())
            return value
        return None

    @field_validator("codec_server_token")
    @classmethod
    def _empty_token_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    @field_validator("codec_server_bind")
    @classmethod
    def _check_bind(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"{value!r} is not HOST:PORT, e.g. 127.0.0.1:8081")
        return value

    @property
    def keys(self) -> list[tuple[str, bytes]]:
        """The payload keys, first the one that encrypts; empty without PAYLOAD_KEYS."""
        return parse_payload_keys(self.payload_keys.get_secret_value()) if self.payload_keys \
            else []

    def allowed_origins(self, ui_url: str) -> list[str]:
        """CODEC_SERVER_ORIGINS, or the origin (scheme://host:port) of ``ui_url``."""
        if self.codec_server_origins:
            return [o.rstrip("/") for o in self.codec_server_origins]
        parts = urlsplit(ui_url)
        return [f"{parts.scheme}://{parts.netloc}"]


def load_codec_settings() -> CodecSettings:
    """Read and validate the payload-encryption settings.

    Raises:
        SettingsError: a variable is invalid; the message names it (never a key).
    """
    return load(CodecSettings, {})
