"""Every workflow class the worker hosts, and the lookup by workflow type name.

The worker registers :data:`ALL_WORKFLOWS`; the CLI's generic commands (``status``,
``--follow``, ``review``) turn the type name a server reports into the class with
:func:`workflow_class`, then query and update through the class's own methods
(``handle.query(cls.state)``), so a renamed handler fails at import, not in production.
Each class is registered under its own class name (``@workflow.defn(name=...)`` equals
``__name__``; a test checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workflows.analysis import AnalysisWorkflow
from workflows.breaker import BreakerWorkflow
from workflows.learning_loop import LearningLoopWorkflow
from workflows.sdlc import SdlcWorkflow
from workflows.workstream import WorkstreamWorkflow

ORCHESTRATIONS: tuple[type, ...] = (SdlcWorkflow, AnalysisWorkflow, WorkstreamWorkflow,
                                    LearningLoopWorkflow)
"""The four orchestrations a person starts (each has a ``state`` query)."""
STATE_QUERIES: dict[type, Callable[..., Any]] = {
    SdlcWorkflow: SdlcWorkflow.state,
    AnalysisWorkflow: AnalysisWorkflow.state,
    WorkstreamWorkflow: WorkstreamWorkflow.state,
    LearningLoopWorkflow: LearningLoopWorkflow.state,
}
"""Each orchestration's ``state`` query (what ``python starter.py status`` shows)."""
ALL_WORKFLOWS: list[type] = [SdlcWorkflow, AnalysisWorkflow, WorkstreamWorkflow,
                             BreakerWorkflow, LearningLoopWorkflow]
"""Everything the worker registers: the orchestrations and the breaker workflow."""


def workflow_type(cls: type) -> str:
    """The workflow type name ``cls`` is registered under (e.g. for a visibility
    query ``WorkflowType = '...'``)."""
    return cls.__name__


def workflow_class(type_name: str) -> type | None:
    """The class registered as ``type_name``, or None for a type this worker does not
    host (another application's workflow on the same server)."""
    return next((c for c in ALL_WORKFLOWS if workflow_type(c) == type_name), None)
