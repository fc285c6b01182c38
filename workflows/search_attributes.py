"""Typed search attributes the workflows keep up to date for the web UI.

The dev server gets them registered by ``starter.py dev-server`` and by the test
fixtures (``ALL_SEARCH_ATTRIBUTES``). The time-skipping test server cannot
register custom attributes, so a workflow maintains an attribute only when it
was started with it set (the CLI sets it; tests on the time-skipping server don't).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributePair

SDLC_PHASE = SearchAttributeKey.for_keyword("SdlcPhase")
ANALYSIS_PHASE = SearchAttributeKey.for_keyword("AnalysisPhase")

# workstream runs: the run state and the work item
WORKSTREAM_STATE = SearchAttributeKey.for_keyword("WorkstreamState")
WORK_ITEM = SearchAttributeKey.for_keyword("WorkItem")

# learning loops: the student (set by the CLI at start)
STUDENT = SearchAttributeKey.for_keyword("Student")

# open gates of any gated workflow (kept by workflows.gates.GatedWorkflow): the inbox.
# GateReviewers holds who may decide each open gate, ``anyone`` for a gate open to all.
OPEN_GATES = SearchAttributeKey.for_keyword_list("OpenGates")
GATE_REVIEWERS = SearchAttributeKey.for_keyword_list("GateReviewers")
GATE_OPENED_AT = SearchAttributeKey.for_datetime("GateOpenedAt")
ANYONE = "anyone"

ALL_SEARCH_ATTRIBUTES: list[SearchAttributeKey] = [SDLC_PHASE, ANALYSIS_PHASE, WORKSTREAM_STATE,
                                                   WORK_ITEM, STUDENT, OPEN_GATES,
                                                   GATE_REVIEWERS, GATE_OPENED_AT]
STARTED_WITH_KEYS: list[SearchAttributeKey] = [SDLC_PHASE, ANALYSIS_PHASE, WORKSTREAM_STATE,
                                               WORK_ITEM, STUDENT]
"""What the CLI sets at start when the server has our attributes registered."""


def started_with(key: SearchAttributeKey) -> bool:
    """Whether this run was started with ``key`` set; call at the start of ``run``."""
    return workflow.info().typed_search_attributes.get(key) is not None


def attributes_registered() -> bool:
    """Whether this run was started with one of our attributes set, i.e. the server
    has them registered (so upserting ours cannot fail the workflow task)."""
    attrs = workflow.info().typed_search_attributes
    return any(attrs.get(k) is not None for k in STARTED_WITH_KEYS)


def upsert(key: SearchAttributeKey[str], value: str) -> None:
    """Set a keyword search attribute of the running workflow."""
    workflow.upsert_search_attributes([SearchAttributePair(key, value)])
