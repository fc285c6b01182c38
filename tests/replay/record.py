"""Record workflow histories for the replay tests: ``python tests/replay/record.py
[sdlc] [learning]`` (all when none is named).

Runs each scenario on a fresh dev server with the real activities and saves
its history as JSON under ``tests/replay/histories/``. Re-record only on purpose:
a saved history is what proves that a workflow change stays replay-safe (a
change to the command sequence must go behind ``workflow.patched``).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cli.sdlc import feature_request, start_sdlc  # noqa: E402
from cli.server import start_local_env  # noqa: E402
from models.common import GateDecision, GateInfo, Verdict  # noqa: E402
from models.sdlc import GATE_1  # noqa: E402
from settings import Settings  # noqa: E402
from worker import make_worker  # noqa: E402
from workflows.gates import GATE_UPDATE  # noqa: E402

HISTORIES = Path(__file__).resolve().parent / "histories"


async def record_sdlc(workdir: Path) -> None:
    """SDLC: reject once, then approve, with the offline agent."""
    repo = workdir / "replay-repo"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["-c", "user.name=R", "-c", "user.email=r@x",
                                                 "commit", "-q", "--allow-empty", "-m", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    env = await start_local_env()
    settings = Settings(orchestrator_home=workdir / "home", temporal_task_queue="replay")
    try:
        async with make_worker(env.client, settings):
            handle = await start_sdlc(env.client, settings, feature_request(
                settings, title="Add CSV export", description="Export as CSV.",
                repo_path=str(repo)))
            for verdict, comment in ((Verdict.REJECT, "more detail"), (Verdict.APPROVE, "ok")):
                while not await handle.query("pending_gates", result_type=list[GateInfo]):
                    await asyncio.sleep(0.05)
                await handle.execute_update(GATE_UPDATE, GateDecision(
                    gate=GATE_1, verdict=verdict, actor="recorder", comment=comment))
                await asyncio.sleep(0.3)
            await handle.result()
            history = await handle.fetch_history()
        (HISTORIES / "sdlc_reject_then_approve.json").write_text(history.to_json())
    finally:
        await env.shutdown()


async def record_learning(workdir: Path) -> None:
    """Learning loop: two rounds (the first answered partly wrong, so it remediates),
    an override, items generated through the LLM layer in round 2 (the bank runs
    short), then the round limit; saves both runs (continue-as-new between them)."""
    from activities.curriculum import import_curriculum, read_curriculum
    from activities.learning_db import LearningDatabase
    from cli.learning import learning_config, start_learning
    from models.learning import Answer, OpenTest, SetMastery, SubmitAnswers
    from workflows.learning_loop import SUBMIT_ANSWERS

    url = f"sqlite:///{workdir / 'learning.db'}"
    db = LearningDatabase(url)
    spec, sha = read_curriculum(ROOT / "curricula" / "fractions.yaml")
    with db.session() as session:
        import_curriculum(session, spec, sha)
    db.dispose()
    env = await start_local_env()
    settings = Settings(orchestrator_home=workdir / "home", temporal_task_queue="replay",
                        database_url=url)
    try:
        async with make_worker(env.client, settings):
            handle = await start_learning(env.client, settings, learning_config(
                settings, student="replay", curriculum="fractions", max_rounds=2,
                items_per_test=4))
            latest = env.client.get_workflow_handle(handle.id)
            for number, answer in ((1, "1/4"), (2, "7")):
                while True:
                    test = await latest.query("open_test", result_type=OpenTest | None)
                    if test is not None and test.round == number:
                        break
                    await asyncio.sleep(0.05)
                if number == 2:
                    await latest.execute_update("set_mastery", SetMastery(
                        kc="equivalent-fractions", mastery=0.5, actor="recorder"))
                await latest.execute_update(SUBMIT_ANSWERS, SubmitAnswers(answers=[
                    Answer(item=i.id, answer=answer) for i in test.items]))
            await latest.result()
            first = env.client.get_workflow_handle(handle.id, run_id=handle.result_run_id)
            (HISTORIES / "learning_loop_round_1.json").write_text(
                (await first.fetch_history()).to_json())
            (HISTORIES / "learning_loop_round_2.json").write_text(
                (await latest.fetch_history()).to_json())
    finally:
        await env.shutdown()


async def main() -> None:
    HISTORIES.mkdir(exist_ok=True)
    only = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        if not only or "sdlc" in only:
            await record_sdlc(Path(tmp))
        if not only or "learning" in only:
            await record_learning(Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
