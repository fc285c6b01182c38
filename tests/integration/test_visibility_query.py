"""User values placed in a visibility query are validated: the injection from
issue 12 (``list --type "x' OR WorkflowType != '"``) is refused, on the dev server."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from cli.common import CliError, visibility_literal
from tests.integration.test_cli import acli, assert_one_line_error, env  # noqa: F401

INJECTION = "x' OR WorkflowType != '"


def test_visibility_literal_accepts_names_and_refuses_query_syntax():
    assert visibility_literal("SdlcWorkflow", "--type") == "'SdlcWorkflow'"
    assert visibility_literal("workstream-calc_1.2:a/b@c+d", "--id") == (
        "'workstream-calc_1.2:a/b@c+d'")
    for bad in (INJECTION, "a b", 'x" OR "1"="1', "x\\", "", "a" * 300):
        with pytest.raises(CliError, match="--type"):
            visibility_literal(bad, "--type")


async def visible(client, query: str, wf_id: str, deadline: float = 20.0) -> bool:
    """Whether ``wf_id`` shows up in ``query``'s results within ``deadline`` seconds
    (the dev server writes visibility records asynchronously: a run started a moment
    ago can be missing from a list under load)."""
    for _ in range(int(deadline / 0.25)):
        if wf_id in [wf.id async for wf in client.list_workflows(query)]:
            return True
        await asyncio.sleep(0.25)
    return False


async def test_list_refuses_the_injection_the_server_would_run(dev_env, env):  # noqa: F811
    # a workflow the injected query would reveal (its type is not "x")
    wf_id = f"visibility-{uuid.uuid4().hex[:8]}"
    await dev_env.client.start_workflow("NoSuchWorkflowType", id=wf_id, task_queue="nobody")
    try:
        # the unvalidated query really is an injection
        assert await visible(dev_env.client, f"WorkflowType = '{INJECTION}'", wf_id)
        refused = await acli("list", "--type", INJECTION, env=env)
        assert_one_line_error(refused, "--type \"x' OR WorkflowType != '\" is not a valid name")
        listed = await acli("list", "--type", "NoSuchWorkflowType", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        assert [r["workflow_id"] for r in json.loads(listed.stdout)] == [wf_id]
    finally:
        await dev_env.client.get_workflow_handle(wf_id).terminate("test done")
