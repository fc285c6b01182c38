"""The ``learn`` commands as a user runs them, against the dev server, with the
worker's real activities on a SQLite file."""

from __future__ import annotations

import json

import pytest

from models.learning import LearningProgress
from settings import Settings
from simulation.student import POLL_QUERY_TIMEOUT
from tests.fault_harness import eventually
from tests.integration.test_cli import acli, assert_one_line_error, cli, two_at_a_time
from tests.learning_support import FRACTIONS
from worker import make_worker
from workflows.learning_loop import LearningLoopWorkflow


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
    """Waits for the loop in-process (a query), then runs the commands that only
    read or are refused two at a time: each is a fresh interpreter."""
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
        handle = dev_env.client.get_workflow_handle(wf)

        async def progress() -> LearningProgress:
            return await handle.query(LearningLoopWorkflow.state,
                                      rpc_timeout=POLL_QUERY_TIMEOUT)

        async def test_open() -> bool:
            return (await progress()).open_test is not None

        await eventually(test_open, "round 1's test", 60, every=0.05)
        again, shown, text, unknown, nobody = await two_at_a_time(
            acli(*start, env=env), acli("learn", "test", wf, "--json", env=env),
            acli("learn", "test", wf, env=env),
            acli("learn", "answer", wf, "--item", "zz", "--answer", "1", env=env),
            acli("learn", "remediation", "learn-nobody-x", env=env))
        assert_one_line_error(again, "already exists")
        items = [i["id"] for i in json.loads(shown.stdout)["open_test"]["items"]]
        assert items == ["fm-1", "fm-2", "fm-3"]
        assert "[fm-1] A cake is cut into 4 equal pieces" in text.stdout
        assert_one_line_error(unknown, "refused: unknown item(s) zz")
        assert_one_line_error(nobody, "no workflow with ID 'learn-nobody-x'")

        one = await acli("learn", "answer", wf, "--item", "fm-1", "--answer", "1/4", env=env)
        assert one.returncode == 0 and "still to answer: fm-2, fm-3" in one.stdout
        answers = tmp_path / "answers.yaml"
        answers.write_text("fm-2: 5\nfm-3: 5/6\n")
        rest = await acli("learn", "answer", wf, "--file", str(answers), env=env)
        assert rest.returncode == 0 and "test closed" in rest.stdout, rest.stderr

        async def round_one() -> bool:
            return (await progress()).round == 1

        await eventually(round_one, "round 1's model update", 60, every=0.05)
        shown, table, remediation, bob = await two_at_a_time(
            acli("learn", "progress", wf, "--json", env=env),
            acli("learn", "progress", wf, env=env), acli("learn", "remediation", wf, env=env),
            acli("learn", "pause", wf, "--as", "bob", env=env))
        first = json.loads(shown.stdout)["kcs"][0]
        assert first["id"] == "fraction-meaning" and first["items"] == 3
        assert 0.1 < first["mastery"] < 0.95  # 2 of 3 right: up from the prior
        assert "fraction-meaning" in table.stdout and "P(L)" in table.stdout
        assert "learning" in table.stdout
        assert remediation.returncode == 0 and "## Worked example" in remediation.stdout
        assert_one_line_error(bob, "'bob' may not override")

        paused = await acli("learn", "pause", wf, "--as", "ms-lee", env=env)
        assert paused.returncode == 0, paused.stderr
        again, done = await two_at_a_time(
            acli("learn", "pause", wf, "--as", "ms-lee", env=env),
            acli("learn", "set-mastery", wf, "--kc", "fraction-meaning", "--mastery", "0.99",
                 "--as", "ms-lee", env=env))
        assert_one_line_error(again, "already paused")
        assert done.returncode == 0 and "-> 0.990" in done.stdout, done.stderr
        assert (await acli("learn", "resume", wf, "--as", "ms-lee", env=env)).returncode == 0
        await eventually(test_open, "round 2's test (in the run that continued as new)", 60,
                         every=0.05)
        shown, table, listed = await two_at_a_time(
            acli("learn", "progress", wf, "--json", env=env),
            acli("learn", "progress", wf, env=env),
            acli("list", "--type", "LearningLoopWorkflow", "--json", env=env))
        assert json.loads(shown.stdout)["open_test"]["round"] == 2
        student = json.loads(shown.stdout)["student"]
        assert f"{student} on fractions: round 2/" in table.stdout
        rows = json.loads(listed.stdout)
        assert [r["workflow_id"] for r in rows].count(wf) == 1  # one row, not one per run
        await handle.terminate()
