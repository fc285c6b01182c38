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

ALL_SEARCH_ATTRIBUTES: list[SearchAttributeKey] = [SDLC_PHASE, ANALYSIS_PHASE, WORKSTREAM_STATE,
                                                   WORK_ITEM]


def started_with(key: SearchAttributeKey) -> bool:
    """Whether this run was started with ``key`` set; call at the start of ``run``."""
    return workflow.info().typed_search_attributes.get(key) is not None


def upsert(key: SearchAttributeKey[str], value: str) -> None:
    """Set a keyword search attribute of the running workflow."""
    workflow.upsert_search_attributes([SearchAttributePair(key, value)])
