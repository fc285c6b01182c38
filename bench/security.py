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
* ``decisions``: with GATE_SIGNERS, a forged gate decision (an unsigned signal
  claiming ``key:alice``) and alice's properly signed decision for one run replayed
  on a second run: accepted ones (target 0; the signed one itself must pass,
  ``signed_decision_accepted`` = 1). The same for a learning loop's teacher
  overrides: an unsigned ``set_mastery`` claiming ``key:alice``, alice's signed one
  (accepted), then that same signed override sent again. ``without_signers`` gives
  the same attacks on a worker without GATE_SIGNERS, where every decision is taken
  at its word.
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
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)

from cli.common import start_orchestration
from models.signatures import DecisionSignature, decision_message, public_key_line, sign
from models.workstream import RouterConfig, WorkstreamInput, WorkstreamSpec
from settings import Settings
from temporal_plumbing.environments import start_local_env
from temporal_plumbing.runtime import exit_process
from worker import make_worker
from workflows.workstream import WorkstreamWorkflow

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
    return await start_orchestration(client, WorkstreamWorkflow.run, inp,
                                     id=f"workstream-{inp.spec.work_item}", settings=settings)


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
    """Until ``step``'s review gate is open. (``progress`` lists the step under review
    a little earlier, while the run loads its signers: a decision sent then is refused,
    "gate 'review-...' is not open", and the run would wait for ever.)"""
    gate = f"review-{step}"
    for _ in range(600):
        if any(g.gate == gate for g in await handle.query(WorkstreamWorkflow.pending_gates)):
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
                report = await handle.query(WorkstreamWorkflow.report)
                steps_ran += len(report.attempts)
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


async def _decision_attacks(work: Path, signers: Path | None) -> dict[str, Any]:
    """Two runs at a review gate; a forged decision on the first, then (with
    ``signers``) alice's properly signed one on the first and that same signed payload
    replayed on the second. Returns which were accepted."""
    env = await start_local_env()
    tag = "signed" if signers else "unsigned"
    try:
        settings = Settings(orchestrator_home=work / f"home-gates-{tag}",
                            temporal_task_queue=f"security-gates-{tag}",
                            workstream_trust_spec_tools=True, gate_signers=signers)
        router = {"tools": {"sh": {"adapter": "shell", "breaker": None}},
                  "routes": {"shell": {"tools": ["sh"]}}}
        steps = [{"id": "review", "kind": "shell", "gate": True,
                  "inputs": {"argv": ["true"]}}]
        url = f"sqlite:///{work / f'learning-{tag}.db'}"
        await asyncio.to_thread(_import_fractions, url)
        settings = settings.model_copy(update={"database_url": url})
        async with make_worker(env.client, settings):
            result: dict[str, Any] = await _override_attacks(env.client, settings, signers)
            first = await _start(env.client, settings, _input(steps, router, work, tag))
            second = await _start(env.client, settings, _input(steps, router, work, tag))
            for handle in (first, second):
                await _wait_review(handle, "review")
            forged = {"gate": "review-review", "verdict": "approve",
                      "actor": "key:alice" if signers else "alice",
                      "comment": "forged: nobody checked who sent this"}
            result["forged"] = await _decided_by(first, forged)
            replayed = forged
            if signers:  # alice signs for the first run; the payload is replayed on the second
                replayed = await _signed_by_alice(first)
                result["signed"] = await _decided_by(first, replayed)
            result["replayed"] = await _decided_by(second, replayed)
            for handle in (first, second):
                if "review" not in (await handle.query(WorkstreamWorkflow.progress)).done:
                    await handle.terminate("security bench done")
    finally:
        await env.shutdown()
    return result


ALICE = Ed25519PrivateKey.generate()


def _import_fractions(url: str) -> None:
    from activities.curriculum import import_curriculum, read_curriculum
    from activities.learning_db import LearningDatabase
    db = LearningDatabase(url)
    spec, sha = read_curriculum(Path(__file__).resolve().parents[1] / "curricula" /
                                "fractions.yaml")
    with db.session() as session:
        import_curriculum(session, spec, sha)
    db.dispose()


async def _override_attacks(client: Client, settings: Settings,
                            signers: Path | None) -> dict[str, Any]:
    """A learning loop whose teacher is alice: an unsigned ``set_mastery`` claiming her
    key (a plain name without signers), then (with ``signers``) her signed one and that
    same signed override sent again. Returns which were accepted."""
    from cli.learning import learning_config, start_learning
    from models.learning import OVERRIDE_GATE, SetMastery
    from workflows.learning_loop import LearningLoopWorkflow

    handle = await start_learning(client, settings, learning_config(
        settings, student=f"bench-{uuid.uuid4().hex[:6]}", curriculum="fractions",
        teachers=["alice"]))
    while await handle.query(LearningLoopWorkflow.open_test) is None:
        await asyncio.sleep(0.05)

    async def accepted(override: SetMastery) -> bool:
        try:
            await handle.execute_update(LearningLoopWorkflow.set_mastery, override)
        except WorkflowUpdateFailedError:
            return False
        return True

    forged = SetMastery(kc="fraction-meaning", mastery=0.99, reason="forged",
                        actor="key:alice" if signers else "alice")
    result = {"forged_override": await accepted(forged)}
    if signers:
        run_id = (await handle.describe()).run_id
        number = (await handle.query(LearningLoopWorkflow.state)).override_number + 1
        now = datetime.now(UTC).replace(microsecond=0)
        signed = SetMastery(kc="fraction-meaning", mastery=0.5, reason="signed by alice",
                            actor="key:alice")
        message = decision_message(workflow_id=handle.id, run_id=run_id, gate=OVERRIDE_GATE,
                                   opening=number, verdict="set_mastery", actor="key:alice",
                                   comment=signed.reason, content=signed.signed_content(),
                                   signed_at=now)
        signed = signed.model_copy(update={"signature": DecisionSignature(
            workflow_id=handle.id, run_id=run_id, opening=number, signed_at=now,
            sshsig=sign(ALICE, message))})
        result["signed_override"] = await accepted(signed)
        result["replayed_override"] = await accepted(signed)
    else:
        result["replayed_override"] = await accepted(forged)
    await handle.terminate("security bench done")
    return result


async def _signed_by_alice(handle: WorkflowHandle) -> dict[str, Any]:
    """A decision approving ``handle``'s open review gate, signed with alice's key."""
    gate = (await handle.query(WorkstreamWorkflow.pending_gates))[0]
    run_id = (await handle.describe()).run_id
    now = datetime.now(UTC).replace(microsecond=0)
    fields = {"workflow_id": handle.id, "run_id": run_id, "gate": gate.gate,
              "opening": gate.opening, "verdict": "approve", "actor": "key:alice",
              "comment": "signed by alice", "content": None, "signed_at": now}
    signature = DecisionSignature(workflow_id=handle.id, run_id=run_id, opening=gate.opening,
                                  signed_at=now, sshsig=sign(ALICE, decision_message(**fields)))
    return {"gate": gate.gate, "verdict": "approve", "actor": "key:alice",
            "comment": "signed by alice", "signature": signature.model_dump(mode="json")}


async def _decided_by(handle: WorkflowHandle, decision: dict[str, Any]) -> bool:
    """Signal ``decision``; whether the run then took it (the review gate closed)."""
    before = len(await handle.query(WorkstreamWorkflow.audit_log))
    await handle.signal(WorkstreamWorkflow.gate_decision, decision)
    for _ in range(200):
        entries = await handle.query(WorkstreamWorkflow.audit_log)
        if any(e.kind in ("decision", "refused") for e in entries[before:]):
            return any(e.kind == "decision" for e in entries[before:])
        await asyncio.sleep(0.05)
    return False


async def decisions(work: Path) -> dict[str, Any]:
    """A forged gate decision and a replayed one, without and with GATE_SIGNERS."""
    unsigned = await _decision_attacks(work, None)
    allowed = work / "allowed_signers"
    allowed.write_text(f"alice {public_key_line(ALICE.public_key().public_bytes_raw())}\n")
    signed = await _decision_attacks(work, allowed)
    return {"signatures_configured": True,
            "forged_decisions_accepted": int(signed["forged"]),
            "replayed_decisions_accepted": int(signed["replayed"]),
            "signed_decision_accepted": int(signed["signed"]),
            "forged_overrides_accepted": int(signed["forged_override"]),
            "replayed_overrides_accepted": int(signed["replayed_override"]),
            "signed_override_accepted": int(signed["signed_override"]),
            "without_signers": {
                "forged_decisions_accepted": int(unsigned["forged"]),
                "replayed_decisions_accepted": int(unsigned["replayed"]),
                "forged_overrides_accepted": int(unsigned["forged_override"]),
                "replayed_overrides_accepted": int(unsigned["replayed_override"]),
                "note": "without GATE_SIGNERS a decision is taken at its word by anyone "
                        "who reaches the server (see the README's threat model)"}}


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
            await handle.signal(WorkstreamWorkflow.gate_decision, {
                "gate": "review-review", "verdict": "approve", "actor": "bench",
                "comment": marker})
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
             d["forged_decisions_accepted"] + d["replayed_decisions_accepted"]),
            ("forged or replayed teacher overrides accepted",
             d["forged_overrides_accepted"] + d["replayed_overrides_accepted"])]
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
