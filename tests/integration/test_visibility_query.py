"""User values placed in a visibility query are validated: the injection from
issue 12 (``list --type "x' OR WorkflowType != '"``) is refused, on the dev server."""

from __future__ import annotations

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


async def test_list_refuses_the_injection_the_server_would_run(dev_env, env):  # noqa: F811
    # a workflow the injected query would reveal (its type is not "x")
    wf_id = f"visibility-{uuid.uuid4().hex[:8]}"
    await dev_env.client.start_workflow("NoSuchWorkflowType", id=wf_id, task_queue="nobody")
    try:
        raw = [wf.id async for wf in dev_env.client.list_workflows(
            f"WorkflowType = '{INJECTION}'")]
        assert wf_id in raw  # the unvalidated query really is an injection
        refused = await acli("list", "--type", INJECTION, env=env)
        assert_one_line_error(refused, "--type \"x' OR WorkflowType != '\" is not a valid name")
        listed = await acli("list", "--type", "NoSuchWorkflowType", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        assert [r["workflow_id"] for r in json.loads(listed.stdout)] == [wf_id]
    finally:
        await dev_env.client.get_workflow_handle(wf_id).terminate("test done")
