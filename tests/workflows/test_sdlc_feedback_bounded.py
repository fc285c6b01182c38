"""Reviewer feedback reaches the agent as a file, and history grows by a flat amount
per round: 8 rejects of an SDLC run on the time-skipping server, real git and
the real ``command`` runner."""

from __future__ import annotations

import asyncio

from temporalio.client import WorkflowHandle

from cli.sdlc import feature_request, start_sdlc
from models.common import GateDecision, GateInfo, Verdict
from models.sdlc import GATE_1, SdlcPhase, SdlcResult, SdlcState
from settings import Settings
from tests.conftest import git
from worker import make_worker
from workflows.gates import GATE_UPDATE

REJECTS = 8
COMMENT_BYTES = 20 * 1024  # 8 of them are 160 KiB: more than one argv/env string may hold

# the agent: the spec is the round number and the whole feedback file; it fails if the
# feedback were (also) passed in a variable
AGENT = ('test -z "${SDLC_FEEDBACK+set}"; mkdir -p "$(dirname "$SDLC_SPEC_PATH")"; '
         '{ echo "# spec, round $SDLC_ROUND"; '
         'if [ -n "$SDLC_FEEDBACK_FILE" ]; then cat "$SDLC_FEEDBACK_FILE"; fi; } '
         '> "$SDLC_SPEC_PATH"')


def comment(n: int) -> str:
    head = f"rejection {n:02d}: "
    return head + "x" * (COMMENT_BYTES - len(head))


async def history_bytes(handle: WorkflowHandle) -> int:
    """The run's history size: the serialized bytes of all its events."""
    history = await handle.fetch_history()
    return sum(event.ByteSize() for event in history.events)


async def gate_open(handle: WorkflowHandle, round_: int) -> None:
    for _ in range(600):
        state = await handle.query("state", result_type=SdlcState)
        gates = await handle.query("pending_gates", result_type=list[GateInfo])
        if state.round == round_ and gates:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"GATE_1 of round {round_} never opened")


async def test_rejects_grow_history_by_a_flat_amount_per_round(
        ts_env, task_queue, git_repo, tmp_path):
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue,
                        agent_runner="command", agent_command=AGENT)
    req = feature_request(settings, title="Add CSV export", repo_path=str(git_repo),
                          max_rounds=REJECTS + 1)
    sizes = []
    async with make_worker(ts_env.client, settings):
        handle = await start_sdlc(ts_env.client, settings, req)
        for n in range(1, REJECTS + 2):
            await gate_open(handle, n)
            sizes.append(await history_bytes(handle))
            if n <= REJECTS:
                await handle.execute_update(GATE_UPDATE, GateDecision(
                    gate=GATE_1, verdict=Verdict.REJECT, actor="rita", comment=comment(n)))
        await handle.execute_update(GATE_UPDATE, GateDecision(
            gate=GATE_1, verdict=Verdict.APPROVE, actor="rita"))
        result = SdlcResult.model_validate(await handle.result())
    assert result.phase == SdlcPhase.DONE and result.rounds == REJECTS + 1

    per_round = [later - earlier for earlier, later in zip(sizes, sizes[1:], strict=False)]
    # each round records the comment about twice (the update, the agent's input) and a
    # few KB of events; re-sending every earlier comment would add COMMENT_BYTES more
    # each round
    assert max(per_round) < 3 * COMMENT_BYTES, per_round
    assert max(per_round) - min(per_round) < 2048, per_round

    # the last spec holds every round's feedback, read from the committed feedback file
    branch = result.branch.name
    spec = git(git_repo, "show", f"{branch}:specs/{branch}/spec.md")
    feedback = git(git_repo, "show", f"{branch}:specs/{branch}/feedback.md")
    for n in range(1, REJECTS + 1):
        assert f"## Round {n}\n\n{comment(n)}\n" in spec + "\n"
        assert comment(n) in feedback
    assert len(git(git_repo, "log", "--format=%H", f"main..{branch}").split()) == REJECTS + 1
