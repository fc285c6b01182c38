"""Benchmark: the attacks of issue 12, run against the real worker on dev servers.

``python bench/security.py`` prints one JSON document:

* ``secrets``: a worker holding ANTHROPIC_API_KEY, GITHUB_TOKEN, EXA_API_KEY and a
  SECRET_ENV secret runs a workstream whose shell step prints its environment and
  the secret its tool is granted, then fails, and whose python steps return and
  raise a secret. Counted: secret values found in the run's history (the JSON of
  ``temporal workflow show``), in the artifact store and in the workspace (target
  0 each), artifact files and directories not private (0600 / 0700; target 0),
  and which secret *names* reached the step's environment (target: only the
  granted one).
* ``authority``: runs that bring a tool the worker does not define, grant
  themselves a secret, or call ``os:system``: steps that ran anyway (target 0).
* ``decisions``: a forged gate decision (a signal claiming ``actor: alice``) and
  the same decision replayed on a second run: accepted ones. Without gate
  signatures configured every decision is taken at its word, so the figure is
  what this worker really does today; ``signatures_configured`` says which case
  was measured (the gate-signing work fills in the signed case).
* ``payloads``: with PAYLOAD_KEYS set, a marker string in a run's step input and
  gate comment: occurrences in the dev server's SQLite database (target 0).

Each figure has a ``targets`` entry for bench/run_all.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # Run as `python bench/<name>.py`, sys.path[0] is bench/, where github.py would
    # shadow PyGithub's `github` package: put the project root there instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import base64
import json
import os
import stat
import tempfile
import uuid
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from models.workstream import Progress, RouterConfig, WorkstreamInput, WorkstreamSpec
from settings import Settings
from temporal_plumbing.environments import start_local_env
from temporal_plumbing.runtime import exit_process
from worker import make_worker
from workflows.gates import GATE_SIGNAL

MODULE = "bench.security"  # python steps call the probes below by this name
SECRET_NAMES = ("ANTHROPIC_API_KEY", "GITHUB_TOKEN", "EXA_API_KEY", "BENCH_DB_PASSWORD")
ROUTER = {"tools": {"sh": {"adapter": "shell", "breaker": None,
                           "secrets": ["BENCH_DB_PASSWORD"]},
                    "py": {"adapter": "python", "breaker": None}},
          "routes": {"shell": {"tools": ["sh"]}, "python": {"tools": ["py"]}}}


def leak(name: str) -> dict[str, str]:
    """Probe: returns the value of environment variable ``name``."""
    return {"value": os.environ.get(name, "")}


def leak_in_error(name: str) -> None:
    """Probe: fails with the value of environment variable ``name`` in its message."""
    raise RuntimeError(f"cannot connect with key {os.environ.get(name, '')}")


def _input(steps: list[dict[str, Any]], router: dict[str, Any], spec_dir: Path,
           item: str) -> WorkstreamInput:
    return WorkstreamInput(
        spec=WorkstreamSpec.model_validate({"work_item": f"{item}-{uuid.uuid4().hex[:8]}",
                                            "steps": steps}),
        router=RouterConfig.model_validate(router), spec_dir=str(spec_dir))


async def _start(client: Client, settings: Settings, inp: WorkstreamInput
                 ) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow("WorkstreamWorkflow", inp,
                                       id=f"workstream-{inp.spec.work_item}",
                                       task_queue=settings.temporal_task_queue)


async def _finish(handle: WorkflowHandle[Any, Any]) -> str:
    """Wait for the run; its error message, or "" when it succeeded."""
    try:
        await handle.result()
        return ""
    except WorkflowFailureError as err:
        return str(err.cause)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts] \
        if root.exists() else []


async def _wait_review(handle: WorkflowHandle[Any, Any], step: str) -> None:
    for _ in range(600):
        progress = await handle.query("progress", result_type=Progress)
        if step in progress.review:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{handle.id} never reached the review of {step}")


async def secrets_and_authority(work: Path) -> dict[str, Any]:
    """The secret-leak and tool-authority attacks on a dev server without a codec
    (so the history searched is the decoded one)."""
    values = {name: f"{name.lower()}-{uuid.uuid4().hex}" for name in SECRET_NAMES}
    saved = {n: os.environ.get(n) for n in (*SECRET_NAMES, "SECRET_ENV", "PAYLOAD_KEYS")}
    os.environ.update(values)
    os.environ["SECRET_ENV"] = "BENCH_DB_PASSWORD"
    os.environ.pop("PAYLOAD_KEYS", None)
    router_file = work / "router.yaml"
    router_file.write_text(json.dumps(ROUTER))
    home = work / "home"
    env = await start_local_env()
    try:
        settings = Settings(orchestrator_home=home, temporal_task_queue="security",
                            anthropic_api_key=None, github_token=None, llm_provider="offline",
                            workstream_router_config=router_file,
                            workstream_python_modules=[MODULE])
        async with make_worker(env.client, settings):
            leak_run = await _start(env.client, settings, _input([
                {"id": "env", "kind": "shell", "inputs": {
                    "script": 'env; echo "granted=$BENCH_DB_PASSWORD" >&2; exit 3'}},
                {"id": "ret", "kind": "python", "inputs": {
                    "callable": f"{MODULE}:leak", "kwargs": {"name": "EXA_API_KEY"}}},
                {"id": "err", "kind": "python", "inputs": {
                    "callable": f"{MODULE}:leak_in_error",
                    "kwargs": {"name": "ANTHROPIC_API_KEY"}}},
            ], ROUTER, work, "leak"))
            await _finish(leak_run)
            history = (await leak_run.fetch_history()).to_json()
            forged_router = {"tools": {**ROUTER["tools"], "mine": {
                "adapter": "shell", "breaker": None, "secrets": ["GITHUB_TOKEN"]}},
                "routes": {**ROUTER["routes"], "mine": {"tools": ["mine"]}}}
            attacks = [
                _input([{"id": "own-tool", "kind": "mine", "inputs": {
                    "script": 'echo "$GITHUB_TOKEN" > stolen'}}], forged_router, work, "own"),
                _input([{"id": "grant", "kind": "shell", "inputs": {
                    "script": 'echo "$GITHUB_TOKEN" > stolen'}}],
                    {**ROUTER, "tools": {**ROUTER["tools"], "sh": {
                        **ROUTER["tools"]["sh"], "secrets": ["GITHUB_TOKEN"]}}}, work, "grant"),
                _input([{"id": "system", "kind": "python", "inputs": {
                    "callable": "os:system", "kwargs": {"command": "touch stolen"}}}],
                    ROUTER, work, "system"),
            ]
            refused, steps_ran = 0, 0
            for inp in attacks:
                handle = await _start(env.client, settings, inp)
                if "refused by the worker" in await _finish(handle):
                    refused += 1
                report = await handle.query("report")
                steps_ran += len(report.get("attempts", []))
    finally:
        await env.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    artifacts = home / "artifacts"
    files = _files(artifacts)
    dirs = [p for p in artifacts.rglob("*") if p.is_dir()] + [artifacts]
    found_artifacts = sum(v in p.read_text(errors="replace")
                          for p in files for v in values.values())
    found_workspace = sum(v in p.read_text(errors="replace")
                          for p in _files(home / "workspaces") for v in values.values())
    stdout = next((p.read_text() for p in files if p.name == "stdout.txt"), "")
    names = {line.split("=", 1)[0] for line in stdout.splitlines() if "=" in line}
    return {
        "secrets": {
            "secret_values_in_history": sum(v in history for v in values.values()),
            "secret_values_in_artifacts": found_artifacts,
            "secret_values_in_workspace": found_workspace,
            "artifact_files": len(files),
            "artifact_files_not_0600": sum(stat.S_IMODE(p.stat().st_mode) != 0o600
                                           for p in files),
            "artifact_dirs_not_0700": sum(stat.S_IMODE(p.stat().st_mode) != 0o700
                                          for p in dirs),
            "secret_names_in_step_env": sorted(names & set(SECRET_NAMES)),
            "scrubbed_markers_in_history": history.count("***"),
        },
        "authority": {"attacks": len(attacks), "refused_before_start": refused,
                      "steps_ran": steps_ran},
    }


async def decisions(work: Path) -> dict[str, Any]:
    """A forged gate decision (signal claiming alice) and its replay on another run."""
    env = await start_local_env()
    try:
        settings = Settings(orchestrator_home=work / "home-gates",
                            temporal_task_queue="security-gates",
                            workstream_trust_spec_tools=True)
        router = {"tools": {"sh": {"adapter": "shell", "breaker": None}},
                  "routes": {"shell": {"tools": ["sh"]}}}
        steps = [{"id": "review", "kind": "shell", "gate": True,
                  "inputs": {"argv": ["true"]}}]
        async with make_worker(env.client, settings):
            first = await _start(env.client, settings, _input(steps, router, work, "gate"))
            second = await _start(env.client, settings, _input(steps, router, work, "gate"))
            forged = {"gate": "review-review", "verdict": "approve", "actor": "alice",
                      "comment": "forged: nobody checked who sent this"}
            accepted = []
            for handle in (first, second):  # the second is the same payload, replayed
                await _wait_review(handle, "review")
                await handle.signal(GATE_SIGNAL, forged)
                for _ in range(200):
                    progress = await handle.query("progress", result_type=Progress)
                    if "review" not in progress.review:
                        break
                    await asyncio.sleep(0.05)
                accepted.append("review" in progress.done)
                if not accepted[-1]:
                    await handle.terminate("security bench done")
    finally:
        await env.shutdown()
    return {"signatures_configured": False,
            "forged_decisions_accepted": int(accepted[0]),
            "replayed_decisions_accepted": int(accepted[1]),
            "note": "no gate signing in this build: a decision is taken at its word by "
                    "anyone who reaches the server (see the README's threat model)"}


async def payloads(work: Path) -> dict[str, Any]:
    """With PAYLOAD_KEYS set: a marker in a step input and a gate comment, searched in
    the dev server's SQLite database."""
    marker = f"PLAINTEXT-MARKER-{uuid.uuid4().hex}"
    saved = os.environ.get("PAYLOAD_KEYS")
    os.environ["PAYLOAD_KEYS"] = f"k1:{base64.b64encode(os.urandom(32)).decode()}"
    db = work / "temporal.db"
    try:
        env = await start_local_env(dev_server_database_filename=str(db))
    except Exception as err:  # noqa: BLE001 - a build without the codec: say so
        return {"measured": False, "note": f"cannot start with PAYLOAD_KEYS: {err}"}
    try:
        encoded = env.client.data_converter.payload_codec is not None
        settings = Settings(orchestrator_home=work / "home-codec",
                            temporal_task_queue="security-codec",
                            workstream_trust_spec_tools=True)
        router = {"tools": {"sh": {"adapter": "shell", "breaker": None}},
                  "routes": {"shell": {"tools": ["sh"]}}}
        async with make_worker(env.client, settings):
            handle = await _start(env.client, settings, _input([
                {"id": "review", "kind": "shell", "gate": True,
                 "inputs": {"script": f"echo {marker}"}}], router, work, "codec"))
            await _wait_review(handle, "review")
            await handle.signal(GATE_SIGNAL, {"gate": "review-review", "verdict": "approve",
                                              "actor": "bench", "comment": marker})
            await _finish(handle)
        await asyncio.sleep(1)  # let the server write through
        raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    finally:
        await env.shutdown()
        if saved is None:
            os.environ.pop("PAYLOAD_KEYS", None)
        else:
            os.environ["PAYLOAD_KEYS"] = saved
    return {"measured": encoded, "plaintext_markers_in_database": raw.count(marker.encode())}


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each figure against its target (0 for every leak and every accepted attack)."""
    s, a, d, p = doc["secrets"], doc["authority"], doc["decisions"], doc["payloads"]
    rows = [("secret values in histories", s["secret_values_in_history"]),
            ("secret values in artifacts and workspaces",
             s["secret_values_in_artifacts"] + s["secret_values_in_workspace"]),
            ("artifact files/dirs not private",
             s["artifact_files_not_0600"] + s["artifact_dirs_not_0700"]),
            ("steps run by refused specs", a["steps_ran"]),
            ("forged or replayed decisions accepted",
             d["forged_decisions_accepted"] + d["replayed_decisions_accepted"])]
    if p.get("measured"):
        rows.append(("plaintext markers in the server DB (codec key set)",
                     p["plaintext_markers_in_database"]))
    return [{"name": name, "target": 0, "measured": value, "met": value == 0}
            for name, value in rows]


async def run() -> dict[str, Any]:
    """Every attack; returns the JSON document."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        doc: dict[str, Any] = {"benchmark": "security",
                               **await secrets_and_authority(work),
                               "decisions": await decisions(work),
                               "payloads": await payloads(work)}
    doc["targets"] = targets(doc)
    return doc


def main() -> int:
    """Print the JSON document."""
    argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0]).parse_args()
    print(json.dumps(asyncio.run(run()), indent=2))
    return 0


if __name__ == "__main__":
    exit_process(main())
