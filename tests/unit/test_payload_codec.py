"""The AES-256-GCM payload codec, PAYLOAD_KEYS, the data converter every client
shares, the dev server's UI codec flag, and the codec server's protocol (CORS,
bearer token, namespace, errors) over real HTTP."""

from __future__ import annotations

import base64
import os

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.contrib.pydantic import pydantic_data_converter

from models.common import GateDecision, Verdict
from settings import Settings, SettingsError
from settings.codec import CodecSettings, load_codec_settings
from temporal_plumbing.client import data_converter
from temporal_plumbing.codec import AesGcmCodec, PayloadDecryptionError
from temporal_plumbing.codec_server import build_codec_app, start_codec_server
from temporal_plumbing.environments import dev_server_argv, free_port

KEY_A, KEY_B = os.urandom(32), os.urandom(32)
B64_A, B64_B = base64.b64encode(KEY_A).decode(), base64.b64encode(KEY_B).decode()
DECISION = GateDecision(gate="GATE_1", verdict=Verdict.REJECT, actor="alice",
                        comment="MARKER-secret-comment")


async def test_the_data_converter_encrypts_with_a_key_and_not_without(monkeypatch):
    monkeypatch.delenv("PAYLOAD_KEYS", raising=False)
    plain = data_converter()
    assert await plain.encode([DECISION]) == await pydantic_data_converter.encode([DECISION])
    monkeypatch.setenv("PAYLOAD_KEYS", f"new:{B64_A}")
    converter = data_converter()
    [payload] = await converter.encode([DECISION])
    assert payload.metadata["encoding"] == b"binary/encrypted"
    assert payload.metadata["encryption-key-id"] == b"new"
    assert b"MARKER" not in payload.SerializeToString()
    assert await converter.decode([payload], [GateDecision]) == [DECISION]
    # Without the key, an encrypted payload is a clear error, not "unknown encoding".
    with pytest.raises(PayloadDecryptionError, match="key 'new', and PAYLOAD_KEYS is unset"):
        await plain.decode([payload], [GateDecision])


async def test_rotation_decrypts_old_payloads_and_encrypts_with_the_first_key():
    old = AesGcmCodec([("old", KEY_B)])
    [sealed_old] = await old.encode([Payload(data=b"x")])
    rotated = AesGcmCodec([("new", KEY_A), ("old", KEY_B)])
    assert await rotated.decode([sealed_old]) == [Payload(data=b"x")]
    [sealed_new] = await rotated.encode([Payload(data=b"y")])
    assert sealed_new.metadata["encryption-key-id"] == b"new"
    with pytest.raises(PayloadDecryptionError, match="key 'new', which PAYLOAD_KEYS does not"):
        await old.decode([sealed_new])


async def test_plaintext_payloads_pass_through_and_tampering_is_detected():
    codec = AesGcmCodec([("a", KEY_A), ("b", KEY_B)])
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"hello"')
    assert await codec.decode([plain]) == [plain]  # histories from before encryption
    [sealed] = await codec.encode([plain])
    flipped = Payload(metadata=sealed.metadata,
                      data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(PayloadDecryptionError, match="does not authenticate"):
        await codec.decode([flipped])
    relabelled = Payload(metadata={**sealed.metadata, "encryption-key-id": b"b"},
                         data=sealed.data)
    with pytest.raises(PayloadDecryptionError, match="does not authenticate"):
        await codec.decode([relabelled])


@pytest.mark.parametrize("value, message", [
    ("k1", "entry 1 is not ID:BASE64KEY"),
    ("k1:not base64!", "key 'k1' is not base64"),
    (f"k1:{base64.b64encode(os.urandom(16)).decode()}", "key 'k1' has 16 bytes"),
    (f"k1:{B64_A},k1:{B64_B}", "key ID 'k1' is given twice"),
])
def test_bad_payload_keys_are_refused_without_showing_a_key(monkeypatch, value, message):
    monkeypatch.setenv("PAYLOAD_KEYS", value)
    with pytest.raises(SettingsError, match=message) as err:
        load_codec_settings()
    assert "PAYLOAD_KEYS" in str(err.value)
    assert B64_A not in str(err.value) and B64_B not in str(err.value)


def test_the_dev_server_gets_the_ui_codec_endpoint_only_with_a_key(tmp_path):
    settings = Settings(orchestrator_home=tmp_path)
    keyed = CodecSettings(payload_keys=f"a:{B64_A}", codec_server_url="http://localhost:9999")
    argv = dev_server_argv(settings, 7999, 8999, codec=keyed)
    assert argv[argv.index("--ui-codec-endpoint") + 1] == "http://localhost:9999"
    assert "--ui-codec-endpoint" not in dev_server_argv(settings, 7999, 8999,
                                                        codec=CodecSettings(payload_keys=None))


async def test_the_codec_server_speaks_the_remote_codec_protocol():
    codec = AesGcmCodec([("a", KEY_A)])
    app = build_codec_app(codec, ["http://localhost:8233"], token="t0ken",
                          namespaces={"default"})
    port = free_port()
    runner = await start_codec_server(app, "127.0.0.1", port)
    base = f"http://127.0.0.1:{port}"
    ui = {"Origin": "http://localhost:8233", "X-Namespace": "default",
          "Content-Type": "application/json", "Authorization": "Bearer t0ken"}
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"MARKER"')
    body = json_format.MessageToJson(Payloads(payloads=[plain]))
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            preflight = await http.options("/decode", headers={
                "Origin": "http://localhost:8233", "Access-Control-Request-Method": "POST"})
            assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:8233"
            assert "x-namespace" in preflight.headers["Access-Control-Allow-Headers"]
            other = await http.options("/decode", headers={"Origin": "http://evil.example"})
            assert "Access-Control-Allow-Origin" not in other.headers

            encoded = await http.post("/encode", content=body, headers=ui)
            assert encoded.status_code == 200
            sealed = json_format.Parse(encoded.content, Payloads()).payloads[0]
            assert sealed.metadata["encryption-key-id"] == b"a" and b"MARKER" not in sealed.data
            decoded = await http.post("/decode", content=encoded.content, headers=ui)
            assert json_format.Parse(decoded.content, Payloads()).payloads[0] == plain

            no_token = await http.post("/decode", content=body,
                                       headers={**ui, "Authorization": "Bearer wrong"})
            assert no_token.status_code == 401
            other_ns = await http.post("/decode", content=body,
                                       headers={**ui, "X-Namespace": "payments"})
            assert other_ns.status_code == 403
            garbage = await http.post("/decode", content=b"{not json", headers=ui)
            assert garbage.status_code == 400 and "not Payloads JSON" in garbage.json()["error"]
            foreign = AesGcmCodec([("z", KEY_B)])
            [alien] = await foreign.encode([plain])
            unknown = await http.post("/decode", headers=ui, content=json_format.MessageToJson(
                Payloads(payloads=[alien])))
            assert unknown.status_code == 400 and "'z'" in unknown.json()["error"]
    finally:
        await runner.cleanup()


def test_every_codec_setting_is_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1]
    missing = [n.upper() for n in CodecSettings.model_fields if f"`{n.upper()}`" not in table]
    assert not missing, f"README configuration table lacks {missing}"


def test_empty_values_from_docker_compose_mean_unset(monkeypatch):
    monkeypatch.setenv("PAYLOAD_KEYS", "")
    monkeypatch.setenv("CODEC_SERVER_TOKEN", "")
    codec = load_codec_settings()
    assert codec.keys == [] and codec.codec_server_token is None
