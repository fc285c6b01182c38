"""Saved histories replay against today's workflow code without non-determinism.

Histories are recorded by ``tests/replay/record.py``; the workflow type named in
each history's first event picks the workflow class.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory

from temporal_plumbing.workers import replayer
from worker import ALL_WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_histories_to_replay():
    assert any(p.name.startswith("sdlc_") for p in HISTORIES)
    assert any(p.name.startswith("learning_loop_") for p in HISTORIES)


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path):
    raw = json.loads(path.read_text())
    # a history that checks signatures bound to its workflow ID records that ID
    history = WorkflowHistory.from_json(raw.get("workflowId", path.stem), raw)
    result = await replayer(ALL_WORKFLOWS).replay_workflow(history,
                                                          raise_on_replay_failure=True)
    assert result.replay_failure is None


def test_there_are_workstream_histories_to_replay():
    names = {p.stem for p in HISTORIES}
    assert {"workstream_diamond_retry_gate", "workstream_breaker",
            "workstream_continue_as_new_run_1"} <= names
