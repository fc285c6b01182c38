"""``learn study STUDENT`` as a student uses it: items with their choices, answers
typed in, feedback, the remediation as written, the next round, quit and resume."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from settings import Settings
from tests.integration.test_cli import ROOT, acli
from tests.integration.test_learning_cli import env  # noqa: F401
from tests.learning_support import FRACTIONS
from worker import make_worker


def study(environ: dict[str, str], typed: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "starter.py"), "learn", "study", *args],
                          input=typed, env=environ, capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


async def test_study_round_after_round_then_quit_and_resume(dev_env, env, task_queue,  # noqa: F811
                                                            tmp_path):
    assert (await acli("learn", "init-db", env=env)).returncode == 0
    assert (await acli("learn", "import", str(FRACTIONS), env=env)).returncode == 0
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue,
                        database_url=env["DATABASE_URL"])
    async with make_worker(dev_env.client, settings):
        started = await acli("learn", "start", "--student", "bo", "--curriculum", "fractions",
                             "--max-rounds", "5", "--json", env=env)
        wf = json.loads(started.stdout)["workflow_id"]
        # round 1: two right, one wrong; then quit at round 2's first item
        first = await asyncio.to_thread(study, env, "1/4\n5\n5/6\nq\n", "bo")
        assert first.returncode == 0, first.stderr
        out = first.stdout
        assert f"studying {wf} as bo" in out
        assert "round 1: fraction-meaning (3 of 3 item(s) to answer)" in out
        assert "[fm-1] A cake is cut into 4 equal pieces" in out
        assert "diagnosed: fraction-meaning: 2/3 right" in out
        assert "mastery: fraction-meaning: P(L)" in out
        assert "--- remediation of round 1 (fraction-meaning) ---" in out
        assert "## Worked example" in out  # the markdown as written
        assert "round 2:" in out and "stopped; resume with" in out

        # someone else may not answer bo's test
        refused = await acli("learn", "answer", wf, "--item", "x", "--answer", "1",
                             "--as", "mallory", env=env)
        assert refused.returncode != 0 and "may answer this test, not 'mallory'" in \
            refused.stderr

        # resume: the same open test of round 2, asked again
        again = await asyncio.to_thread(study, env, "q\n", "bo", "--curriculum", "fractions")
        assert again.returncode == 0, again.stderr
        assert "round 2:" in again.stdout and "round 1:" not in again.stdout
        assert "remediation of round 1" not in again.stdout  # old news is not repeated
        await dev_env.client.get_workflow_handle(wf).terminate()
