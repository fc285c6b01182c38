"""The ``learn`` commands as a user runs them, against the dev server, with the
worker's real activities on a SQLite file."""

from __future__ import annotations

import asyncio
import json

import pytest

from settings import Settings
from tests.integration.test_cli import acli, assert_one_line_error, cli
from tests.learning_support import FRACTIONS
from worker import make_worker


@pytest.fixture
def env(dev_env, task_queue, tmp_path) -> dict[str, str]:
    import os

    return {**os.environ, "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": task_queue, "ORCHESTRATOR_HOME": str(tmp_path / "home"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'learning.db'}"}


def test_a_bad_curriculum_is_one_line_and_imports_nothing(env, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: bad\ntitle: Bad\nknowledge_components:\n  - id: a\n    name: A\n"
                   "    items:\n      - id: a-1\n        prompt: '?'\n"
                   "        answer_type: numeric\n        answer: lots\n")
    proc = cli("learn", "import", str(bad), env=env)
    assert_one_line_error(proc, "knowledge_components[0] (id 'a').items[0] (id 'a-1').answer:"
                          " 'lots' is not a number")
    assert proc.returncode == 2
    assert_one_line_error(cli("learn", "import", str(tmp_path / "none.yaml"), env=env),
                          "cannot read the file")
    proc = cli("learn", "start", "--student", "ana", "--curriculum", "bad", env=env)
    assert_one_line_error(proc, "curriculum 'bad' is not imported")


async def test_a_student_through_the_cli(dev_env, env, task_queue, tmp_path):
    init = await acli("learn", "init-db", "--json", env=env)
    assert init.returncode == 0, init.stderr
    assert json.loads(init.stdout)["revision"] == "0002"
    imported = await acli("learn", "import", str(FRACTIONS), env=env)
    assert imported.returncode == 0 and "5 KCs" in imported.stdout, imported.stderr
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue,
                        database_url=env["DATABASE_URL"])
    async with make_worker(dev_env.client, settings):
        start = ("learn", "start", "--student", "ana", "--curriculum", "fractions",
                 "--max-rounds", "5", "--teacher", "ms-lee", "--json")
        started = await acli(*start, env=env)
        assert started.returncode == 0, started.stderr
        wf = json.loads(started.stdout)["workflow_id"]
        assert wf == "learn-ana-fractions"
        assert_one_line_error(await acli(*start, env=env), "already exists")
        for _ in range(100):
            shown = json.loads((await acli("learn", "test", wf, "--json", env=env)).stdout)
            if shown["open_test"]:
                break
            await asyncio.sleep(0.1)
        items = [i["id"] for i in shown["open_test"]["items"]]
        assert items == ["fm-1", "fm-2", "fm-3"]
        text = (await acli("learn", "test", wf, env=env)).stdout
        assert "[fm-1] A cake is cut into 4 equal pieces" in text

        assert_one_line_error(await acli("learn", "answer", wf, "--item", "zz", "--answer", "1",
                                         env=env), "refused: unknown item(s) zz")
        one = await acli("learn", "answer", wf, "--item", "fm-1", "--answer", "1/4", env=env)
        assert one.returncode == 0 and "still to answer: fm-2, fm-3" in one.stdout
        answers = tmp_path / "answers.yaml"
        answers.write_text("fm-2: 5\nfm-3: 5/6\n")
        rest = await acli("learn", "answer", wf, "--file", str(answers), env=env)
        assert rest.returncode == 0 and "test closed" in rest.stdout, rest.stderr
        assert_one_line_error(await acli("learn", "remediation", "learn-nobody-x", env=env),
                              "no workflow with ID 'learn-nobody-x'")

        for _ in range(100):
            progress = json.loads((await acli("learn", "progress", wf, "--json",
                                              env=env)).stdout)
            if progress["round"] == 1:
                break
            await asyncio.sleep(0.1)
        first = progress["kcs"][0]
        assert first["id"] == "fraction-meaning" and first["items"] == 3
        assert 0.1 < first["mastery"] < 0.95  # 2 of 3 right: up from the prior
        table = (await acli("learn", "progress", wf, env=env)).stdout
        assert "fraction-meaning" in table and "P(L)" in table and "learning" in table
        remediation = await acli("learn", "remediation", wf, env=env)
        assert remediation.returncode == 0 and "## Worked example" in remediation.stdout

        assert_one_line_error(await acli("learn", "pause", wf, "--as", "bob", env=env),
                              "'bob' may not override")
        paused = await acli("learn", "pause", wf, "--as", "ms-lee", env=env)
        assert paused.returncode == 0, paused.stderr
        assert_one_line_error(await acli("learn", "pause", wf, "--as", "ms-lee", env=env),
                              "already paused")
        done = await acli("learn", "set-mastery", wf, "--kc", "fraction-meaning", "--mastery",
                          "0.99", "--as", "ms-lee", env=env)
        assert done.returncode == 0 and "-> 0.990" in done.stdout, done.stderr
        assert (await acli("learn", "resume", wf, "--as", "ms-lee", env=env)).returncode == 0
        for _ in range(100):  # round 2 opens in the run that continued as new
            progress = json.loads((await acli("learn", "progress", wf, "--json",
                                              env=env)).stdout)
            if progress["open_test"]:
                break
            await asyncio.sleep(0.1)
        assert progress["open_test"]["round"] == 2
        assert f"{progress['student']} on fractions: round 2/" in (
            await acli("learn", "progress", wf, env=env)).stdout
        listed = json.loads((await acli("list", "--type", "LearningLoopWorkflow", "--json",
                                        env=env)).stdout)
        assert [r["workflow_id"] for r in listed].count(wf) == 1  # one row, not one per run
        await dev_env.client.get_workflow_handle(wf).terminate()
