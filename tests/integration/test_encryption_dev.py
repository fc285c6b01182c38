"""Encrypted payloads end to end: with PAYLOAD_KEYS set, a marker in an SDLC run's
input is absent from the raw history and from the dev server's SQLite file,
present through ``starter.py codec-server``'s /decode, and the history replays
through the shared replayer."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History

from cli.sdlc import feature_request, start_sdlc
from settings import Settings
from temporal_plumbing.environments import free_port, server_answers, start_local_env
from temporal_plumbing.workers import replayer
from tests.integration.test_sdlc_dev import wait_gate
from worker import ALL_WORKFLOWS, make_worker

ROOT = Path(__file__).resolve().parents[2]


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def database_bytes(db: Path) -> bytes:
    """The SQLite file with its write-ahead log and shared-memory files."""
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


def started_input(history_json: bytes) -> bytes:
    """The first input payload's data in ``temporal workflow show --output json``."""
    event = json.loads(history_json)["events"][0]
    payload = event["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
    return base64.b64decode(payload["data"])


def start_codec_server(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "starter.py", "codec-server", "--bind",
                             f"127.0.0.1:{port}"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not server_answers(f"127.0.0.1:{port}"):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the codec server did not start"
        time.sleep(0.1)
    return proc


async def test_a_marker_in_the_input_is_only_readable_through_the_codec(
        monkeypatch, git_repo, tmp_path):
    marker = f"MARKER-{uuid.uuid4().hex}"
    keys = f"k2:{new_key()},k1:{new_key()}"
    monkeypatch.setenv("PAYLOAD_KEYS", keys)
    db = tmp_path / "temporal.db"
    env = await start_local_env(dev_server_database_filename=str(db))
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue="codec")
    try:
        assert env.client.data_converter.payload_codec is not None
        req = feature_request(settings, title="Add CSV export",
                              description=f"Export as CSV. {marker}", repo_path=str(git_repo))
        async with make_worker(env.client, settings):
            handle = await start_sdlc(env.client, settings, req)
            await wait_gate(handle, 1)
            history = await handle.fetch_history()
            await handle.terminate("test done")
        raw = History(events=history.events).SerializeToString()  # payload data as bytes
        started = history.events[0]
        assert started.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
        payload = started.workflow_execution_started_event_attributes.input.payloads[0]
        assert payload.metadata["encryption-key-id"] == b"k2"
        assert marker.encode() not in raw and b"Export as CSV" not in raw
        await asyncio.sleep(1)  # let the server write through
        assert marker.encode() not in database_bytes(db)

        # The replayer of the replay tests reads the encrypted history.
        replayed = await replayer(ALL_WORKFLOWS).replay_workflow(
            history, raise_on_replay_failure=True)
        assert replayed.replay_failure is None

        port = free_port()
        token = uuid.uuid4().hex
        proc = start_codec_server({**os.environ, "PAYLOAD_KEYS": keys,
                                   "CODEC_SERVER_TOKEN": token}, port)
        try:
            body = json_format.MessageToJson(Payloads(payloads=[payload]))
            url = f"http://127.0.0.1:{port}/decode"
            headers = {"Content-Type": "application/json", "X-Namespace": "default",
                       "Origin": "http://localhost:8233"}
            async with httpx.AsyncClient() as http:
                refused = await http.post(url, content=body, headers=headers)
                decoded = await http.post(url, content=body, headers={
                    **headers, "Authorization": f"Bearer {token}"})
            assert refused.status_code == 401
            assert decoded.status_code == 200, decoded.text
            assert decoded.headers["Access-Control-Allow-Origin"] == "http://localhost:8233"
            plain = json_format.Parse(decoded.content, Payloads()).payloads[0]
            assert marker.encode() in plain.data
            assert plain.metadata["encoding"] == b"json/plain"
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    finally:
        await env.shutdown()


async def test_the_cli_the_web_ui_and_the_temporal_cli_with_a_key(tmp_path):
    """`demo` with PAYLOAD_KEYS (CLI, in-process worker and background dev server all
    encrypting): the dev server's database holds no request text, its web UI is
    configured with the codec endpoint, and `temporal workflow show` reads the
    request through `starter.py codec-server`."""
    from cli.demo import DEMO_DESCRIPTION
    from temporal_plumbing.environments import temporal_executable
    from tests.integration.test_cli import acli

    port, ui_port, codec_port = free_port(), free_port(), free_port()
    codec_url = f"http://127.0.0.1:{codec_port}"
    env = {**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
           "TEMPORAL_UI_URL": f"http://localhost:{ui_port}",
           "ORCHESTRATOR_HOME": str(tmp_path / "home"), "PAYLOAD_KEYS": f"k1:{new_key()}",
           "CODEC_SERVER_URL": codec_url}
    env.pop("CODEC_SERVER_TOKEN", None)
    codec = None
    try:
        demo = await acli("demo", env=env)
        assert demo.returncode == 0, demo.stderr
        workflow_id = next(line.split()[1] for line in demo.stdout.splitlines()
                           if line.startswith("workflow "))
        text = DEMO_DESCRIPTION.split(".")[0].encode()
        assert text not in database_bytes(tmp_path / "home" / "temporal.db")
        async with httpx.AsyncClient() as http:
            ui = (await http.get(f"http://127.0.0.1:{ui_port}/api/v1/settings")).json()
        assert ui["Codec"]["Endpoint"] == codec_url

        codec = start_codec_server(env, codec_port)
        show = [temporal_executable(), "workflow", "show", "-w", workflow_id, "--address",
                f"127.0.0.1:{port}", "--output", "json"]
        plain = await asyncio.to_thread(subprocess.run, [*show, "--codec-endpoint", codec_url],
                                        capture_output=True, timeout=60)
        sealed = await asyncio.to_thread(subprocess.run, show, capture_output=True, timeout=60)
        assert plain.returncode == 0, plain.stderr
        assert text in started_input(plain.stdout) and text not in started_input(sealed.stdout)

        # The CLI without the key, or with another one, says so in one line.
        without = {k: v for k, v in env.items() if k != "PAYLOAD_KEYS"}
        for cli_env, expected in ((without, "and PAYLOAD_KEYS is unset"),
                                  ({**env, "PAYLOAD_KEYS": f"k9:{new_key()}"},
                                   "which PAYLOAD_KEYS does not hold")):
            result = await acli("result", workflow_id, env=cli_env)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 1 and len(lines) == 1, result.stderr
            assert lines[0].startswith("error: cannot decode the workflow's data: payload "
                                       "encrypted with key 'k1'") and expected in lines[0]
    finally:
        if codec is not None:
            codec.send_signal(signal.SIGTERM)
            codec.wait(timeout=30)
        await acli("dev-server", "--stop", env=env)
