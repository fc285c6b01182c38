"""The example workstream (examples/workstream/spec.yaml) on the dev server, driven by
the CLI as a user runs it: real shell steps build and test a small Python package."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from settings import Settings
from tests.integration.test_cli import acli, assert_one_line_error, env  # noqa: F401
from worker import make_worker

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "workstream" / "spec.yaml"


async def test_example_spec_builds_and_tests_the_package(dev_env, env, task_queue,  # noqa: F811
                                                         tmp_path):
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue)
    async with make_worker(dev_env.client, settings):
        started = await acli("workstream", "start", str(EXAMPLE), "--follow", env=env)
        assert started.returncode == 0, started.stderr
        assert "started workstream-calc-package (5 steps)" in started.stdout
        assert "succeeded: done 5" in started.stdout.splitlines()[-1]
        assert_one_line_error(await acli("workstream", "start", str(EXAMPLE), env=env),
                              "already exists")

        status = await acli("workstream", "status", "calc-package", env=env)
        assert "workstream-calc-package: succeeded" in status.stdout
        report_md = (await acli("workstream", "report", "calc-package", env=env)).stdout
        assert "# Workstream calc-package" in report_md and "## Routing decisions" in report_md
        assert "`unit-tests`: sh: auto over [sh, sh-spare]" in report_md
        report = json.loads((await acli("workstream", "report", "calc-package", "--json",
                                        env=env)).stdout)
        assert report["state"] == "succeeded" and report["executions"] == 5
        assert report["retries"] == 0 and report["breaker_trips"] == 0
        assert sorted(e["step"] for e in report["routing_decisions"]) == [
            "build", "checkout", "compile", "smoke", "unit-tests"]
        scheduled = [e["step"] for e in report["report"]["events"] if e["kind"] == "scheduled"]
        assert scheduled == ["checkout", "unit-tests", "compile", "build", "smoke"]  # priority

        verified = await acli("workstream", "verify", "calc-package", env=env)
        assert verified.returncode == 0, verified.stderr
        assert "chain intact: 5 handoff commit(s)" in verified.stdout

        listed = json.loads((await acli("list", "--type", "WorkstreamWorkflow", "--json",
                                        env=env)).stdout)
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
