"""The example workstream (examples/workstream/spec.yaml) on the dev server, driven by
the CLI as a user runs it: real shell steps build and test a small Python package."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path

import yaml

from settings import Settings
from tests.integration.test_cli import (  # noqa: F401
    acli,
    assert_one_line_error,
    env,
    two_at_a_time,
)
from worker import make_worker

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "workstream" / "spec.yaml"


async def test_example_spec_builds_and_tests_the_package(dev_env, env, task_queue,  # noqa: F811
                                                         tmp_path):
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue,
                        workstream_router_config=EXAMPLE.parent / "router_config.yaml")
    async with make_worker(dev_env.client, settings):
        started = await acli("workstream", "start", str(EXAMPLE), "--follow", env=env)
        assert started.returncode == 0, started.stderr
        assert "started workstream-calc-package (5 steps)" in started.stdout
        assert "succeeded: done 5" in started.stdout.splitlines()[-1]
        # what only reads or is refused, two at a time (each is a fresh interpreter)
        again, status, report_md, report, verified, listed = await two_at_a_time(
            acli("workstream", "start", str(EXAMPLE), env=env),
            acli("workstream", "status", "calc-package", env=env),
            acli("workstream", "report", "calc-package", env=env),
            acli("workstream", "report", "calc-package", "--json", env=env),
            acli("workstream", "verify", "calc-package", env=env),
            acli("list", "--type", "WorkstreamWorkflow", "--json", env=env))
        assert_one_line_error(again, "already exists")
        assert "workstream-calc-package: succeeded" in status.stdout
        report_md = report_md.stdout
        assert "# Workstream calc-package" in report_md and "## Routing decisions" in report_md
        assert ("`unit-tests`: sh: auto: first healthy tool covering ['python3'] of "
                "[sh, sh-spare]") in report_md
        report = json.loads(report.stdout)
        assert report["state"] == "succeeded" and report["executions"] == 5
        assert report["retries"] == 0 and report["breaker_trips"] == 0
        assert sorted(e["step"] for e in report["routing_decisions"]) == [
            "build", "checkout", "compile", "smoke", "unit-tests"]
        scheduled = [e["step"] for e in report["report"]["events"] if e["kind"] == "scheduled"]
        assert scheduled == ["checkout", "unit-tests", "compile", "build", "smoke"]  # priority
        assert verified.returncode == 0, verified.stderr
        assert "chain intact: 5 handoff commit(s)" in verified.stdout
        listed = json.loads(listed.stdout)
        attrs = listed[0]["search_attributes"]
        assert attrs["WorkstreamState"] == ["succeeded"] and attrs["WorkItem"] == ["calc-package"]

        workspace = Path(report["report"]["workspace"])
        out = subprocess.run(["python3", str(workspace / "dist" / "calc.pyz"), "mul", "6", "7"],
                             capture_output=True, text=True, check=True).stdout
        assert out == "42\n"

        handoff = Path(report["report"]["handoffs"][2]["path"])
        handoff.write_text(handoff.read_text().replace("succeeded", "failed"))
        subprocess.run(["git", "-c", "user.name=M", "-c", "user.email=m@x", "commit", "-qam",
                        "tamper"], cwd=workspace, check=True)
        bad = subprocess.run(["git", "rev-parse", "HEAD"], cwd=workspace, capture_output=True,
                             text=True, check=True).stdout.strip()
        broken = await acli("workstream", "verify", "calc-package", env=env)
        assert broken.returncode == 1
        assert f"chain broken at commit {bad}" in broken.stdout


async def status_of(wf: str, environ: dict[str, str]) -> dict:
    proc = await acli("workstream", "status", wf, "--json", env=environ)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


async def wait_status(wf: str, environ: dict[str, str], pred) -> dict:
    for _ in range(100):
        status = await status_of(wf, environ)
        if pred(status):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{wf} never reached the expected status: {status}")


async def test_quarantine_resume_review_and_cancel_from_the_cli(
        dev_env, env, task_queue, tmp_path):  # noqa: F811
    item = f"cli-{uuid.uuid4().hex[:6]}"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"work_item": item, "failure_budget": 0, "steps": [
        {"id": "fragile", "kind": "shell",
         "inputs": {"script": 'test -f "$WORKSTREAM_SPEC_DIR/fixed"'}},
        {"id": "review-me", "kind": "shell", "gate": True, "depends_on": ["fragile"],
         "inputs": {"script": "echo draft"}},
    ]}))
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue)
    async with make_worker(dev_env.client, settings):
        assert (await acli("workstream", "start", str(spec), env=env)).returncode == 0
        status = await wait_status(item, env, lambda s: s["progress"]["state"] == "quarantined")
        assert "exceed the failure budget of 0: fragile" in status["state"]["reason"]
        assert_one_line_error(await acli("workstream", "approve", item, env=env),
                              "no gate is open")
        (tmp_path / "fixed").write_text("")
        resumed = await acli("workstream", "resume", item, "--comment", "fixed", env=env)
        assert "re-running fragile" in resumed.stdout, resumed.stderr
        assert_one_line_error(await acli("workstream", "resume", item, env=env),
                              "only a quarantined run can be resumed")
        await wait_status(item, env, lambda s: s["progress"]["review"] == ["review-me"])
        approved = await acli("workstream", "approve", item, "--step", "review-me", env=env)
        assert "review-review-me: approve accepted" in approved.stdout, approved.stderr
        status = await wait_status(item, env, lambda s: s["progress"]["state"] == "succeeded")
        assert status["progress"]["done"] == ["fragile", "review-me"]

        long_item = f"cli-long-{uuid.uuid4().hex[:6]}"
        spec.write_text(yaml.safe_dump({"work_item": long_item, "steps": [
            {"id": "long", "kind": "shell", "inputs": {"script": "sleep 300"}}]}))
        assert (await acli("workstream", "start", str(spec), env=env)).returncode == 0
        await wait_status(long_item, env, lambda s: s["progress"]["running"] == ["long"])
        assert (await acli("workstream", "cancel", long_item, env=env)).returncode == 0
        status = await wait_status(long_item, env,
                                   lambda s: s["progress"]["state"] == "canceled")
        assert status["state"]["steps"] == {"long": "canceled"}


async def test_follow_names_the_step_under_review_and_run_starts_it_again(
        dev_env, env, task_queue, tmp_path):  # noqa: F811
    """A one-file spec (its route written inline, among the worker's own tools):
    `start --follow` says which step waits for review and how to decide, then ends 0
    once approved; the same work item runs again under `--run 2`."""
    import os
    import sys

    item = f"inline-{uuid.uuid4().hex[:6]}"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "work_item": item, "routes": {"build": {"tools": ["shell"]}},
        "steps": [{"id": "compile", "kind": "build", "gate": True,
                   "inputs": {"script": "echo built > out.txt; echo compiled"}},
                  {"id": "after", "kind": "shell", "depends_on": ["compile"],
                   "inputs": {"script": "cat out.txt"}}]}))
    environ = {k: v for k, v in env.items() if k != "WORKSTREAM_ROUTER_CONFIG"}
    settings = Settings(_env_file=None, orchestrator_home=tmp_path / "home",
                        temporal_task_queue=task_queue)  # the default tools; no trust
    async with make_worker(dev_env.client, settings):
        follow = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "starter.py"), "workstream", "start", str(spec),
            "--follow", env=environ, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        seen: list[str] = []
        try:
            async with asyncio.timeout(60):
                while not any("Send an Update" in line for line in seen):
                    line = (await follow.stdout.readline()).decode()
                    assert line, f"--follow ended early: {seen} {await follow.stderr.read()}"
                    seen.append(line.rstrip())
            text = "\n".join(seen)
            wf = f"workstream-{item}"
            assert f"== gate review-compile is open on {wf}" in text, text
            assert "review step compile (execution 1 on shell)" in text
            assert f"python starter.py approve {wf} --gate review-compile" in text
            assert "to judge:" in text and "stdout.txt" in text  # the step's output
            approved = await acli("workstream", "approve", wf, "--step", "compile", env=environ)
            assert approved.returncode == 0, approved.stderr
            async with asyncio.timeout(60):
                rest, err = await follow.communicate()
        finally:
            if follow.returncode is None:
                follow.kill()
                await follow.wait()
        assert follow.returncode == 0, (rest, err)
        assert "succeeded: done 2" in rest.decode().splitlines()[-1]

        again = await acli("workstream", "start", str(spec), env=environ)
        assert_one_line_error(again, "already exists")
        assert "--run SUFFIX" in again.stderr
        assert_one_line_error(await acli("workstream", "start", str(spec), "--run", "Bad!",
                                         env=environ), "--run 'Bad!' must be")
        rerun = await acli("workstream", "start", str(spec), "--run", "2", "--json",
                           env=environ)
        assert rerun.returncode == 0, rerun.stderr
        assert json.loads(rerun.stdout)["workflow_id"] == f"workstream-{item}@2"
        status = await wait_status(f"{item}@2", environ,
                                   lambda s: s["progress"]["review"] == ["compile"])
        first = (await status_of(item, environ))["state"]["workspace"]
        assert status["state"]["workspace"] != first and os.path.isdir(first)
        cancelled = await acli("workstream", "cancel", f"{item}@2", env=environ)
        assert cancelled.returncode == 0, cancelled.stderr
