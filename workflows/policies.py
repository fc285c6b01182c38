"""Timeouts and retry policies of every activity call, as named constants.

Retries belong to Temporal: SDK clients inside activities have their own
retries off, and each activity call here says how long one attempt may take
and how failures are retried.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

# Local git commands: fast, and a failure is usually a lock file or a full disk.
GIT_TIMEOUT = timedelta(seconds=60)
GIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)

# The worker's check of a run's tools (workstream): reads the worker's own
# configuration; a refusal is non-retryable, anything else is a lost worker.
ADMISSION_TIMEOUT = timedelta(seconds=30)
ADMISSION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
    non_retryable_error_types=["WorkstreamRefused"],
)

# Issue tracker calls (local file or GitHub REST): rate limits set their own delay.
TRACKER_TIMEOUT = timedelta(seconds=60)
TRACKER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=10,
)

# Agent runs: long; they heartbeat every second (activities/agents.py
# HEARTBEAT_EVERY), so a worker that died is noticed after AGENT_HEARTBEAT_TIMEOUT,
# not after the whole start-to-close timeout. 5 s (was 10): recovery within
# seconds, while the SDK still sends a heartbeat every 4 s (0.8 x the timeout).
AGENT_HEARTBEAT_TIMEOUT = timedelta(seconds=5)
AGENT_TIMEOUT_MARGIN = timedelta(seconds=60)
# First retry after 0.5 s: a lost attempt (the usual reason for a retry once the
# heartbeat timeout has passed) resumes within the 2 s recovery target
# (bench/faults.py); a failing agent still backs off 0.5, 1, ... s.
AGENT_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=3,
)

# Workstream steps: lost attempts only (the worker died or was lost, a heartbeat
# timeout, a completion the server rejected after a restart). The activity raises
# the step's own failures as non-retryable and the workflow counts them against
# the spec's retry.max_attempts, so these retries never use up a step's budget.
# Bounded, so that a step that kills its worker every time (e.g. out of memory)
# still fails in the end.
STEP_INFRA_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=20,
)

# LLM calls (issue 4): one attempt covers the model call and its re-asks after
# invalid structured output; rate limits and overload (429, 529) retry after the
# server's retry-after (next_retry_delay), else with this backoff.
LLM_TIMEOUT = timedelta(minutes=20)
# The activity heartbeats every second while the call runs (activities/llm.py
# HEARTBEAT_EVERY), so a worker that died mid-call is noticed after this, not
# after LLM_TIMEOUT, and the call is retried on another worker.
LLM_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
LLM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=6,
)

# Analysis pipeline (issue 4): reading source files and writing the report (local
# files), and web searches (Exa; rate limits retry with backoff).
ANALYSIS_IO_TIMEOUT = timedelta(seconds=60)
ANALYSIS_IO_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)
WEB_SEARCH_TIMEOUT = timedelta(seconds=60)
WEB_SEARCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=4,
)

# Comment polls and comments on the tracking issue (GitHub): few attempts, since the
# gate's wait is not blocked by them and the next poll comes anyway; a rate limit
# still waits for its reset through next_retry_delay.
COMMENT_TIMEOUT = timedelta(seconds=60)
COMMENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=3,
)
# The long-running comment watch of an open gate (activities/issues.py
# watch_comments): it heartbeats every 2 s while it waits and sends at most a few
# GitHub requests of up to 20 s each (activities/github.py REQUEST_TIMEOUT) between
# heartbeats, so a dead worker is noticed within a minute. An attempt that finds no
# command ends with the benign NoNewComments failure and is retried after the poll
# interval, for ever (not written to history); a rate limit waits for its reset
# (next_retry_delay). A non-retryable failure (bad token, no such repository) is
# audited and the watch restarts after COMMENT_WATCH_RESTART.
COMMENT_WATCH_HEARTBEAT_TIMEOUT = timedelta(seconds=60)
COMMENT_WATCH_RESTART = timedelta(minutes=15)


def comment_watch_retry(interval: timedelta) -> RetryPolicy:
    """The retry policy of the comment watch: every ``interval``, without end."""
    return RetryPolicy(initial_interval=interval, backoff_coefficient=1.0,
                       maximum_interval=interval, maximum_attempts=0)


# -- Local activities (issue 7): the one place that says which steps are local --
# A local activity runs inside the worker that holds the workflow task and is
# recorded as a marker when that task completes: a no-op step costs ~3 ms
# instead of ~13 ms. The price: after a worker crash every local activity since
# the last completed workflow task RUNS AGAIN (measured: 42-44 of 50 finished
# steps re-ran), and a long one holds the workflow task open. So a step is local
# only when it is short (well under LOCAL_ACTIVITY_TIMEOUT) and read-only or
# idempotent: database reads, upserts keyed by workflow ID and step, pure
# computations such as labels. Everything not listed here runs as a normal
# activity.
LOCAL_ACTIVITIES: dict[str, str] = {
    # "activity name": "why running it twice is harmless and why it is short",
    # (none yet: every SDLC step writes to git, an issue tracker or runs an agent)
}

# Steps that must never be local, whatever their speed: their effects are not
# safe to repeat, or they run for minutes.
NEVER_LOCAL: dict[str, str] = {
    "prepare_branch": "git: creates a branch (a git write)",
    "add_worktree": "git: adds a worktree (a git write)",
    "remove_worktree": "git: removes a worktree (a git write)",
    "open_issue": "issue tracker write (GitHub issues when configured)",
    "sync_phase_label": "issue tracker write (GitHub labels when configured)",
    "run_agent": "shell tool and LLM calls, minutes long",
    "llm_complete": "LLM call: costs money, output differs run to run",
}

LOCAL_ACTIVITY_TIMEOUT = timedelta(seconds=5)


def is_local(activity_name: str) -> bool:
    """Whether the step named ``activity_name`` runs as a local activity
    (listed in LOCAL_ACTIVITIES and not in NEVER_LOCAL)."""
    return activity_name in LOCAL_ACTIVITIES and activity_name not in NEVER_LOCAL


async def execute_step(activity: Any, arg: Any, *, start_to_close_timeout: timedelta,
                       retry_policy: RetryPolicy | None = None, summary: str | None = None,
                       result_type: type | None = None) -> Any:
    """Run one step from workflow code: as a local activity when :func:`is_local`
    says so (its timeout capped at LOCAL_ACTIVITY_TIMEOUT), else as a normal
    activity. ``activity`` is an activity function or method (``Class.method``);
    for methods the worker's registered instance runs it. Returns its result;
    raises ``ActivityError`` as ``workflow.execute_activity`` does."""
    from temporalio import activity as activity_mod
    from temporalio import workflow

    name = activity_mod._Definition.must_from_callable(activity).name
    if is_local(name):
        return await workflow.execute_local_activity(
            name, arg, start_to_close_timeout=min(start_to_close_timeout,
                                                  LOCAL_ACTIVITY_TIMEOUT),
            retry_policy=retry_policy, summary=summary, result_type=result_type)
    return await workflow.execute_activity(
        name, arg, start_to_close_timeout=start_to_close_timeout, retry_policy=retry_policy,
        summary=summary, result_type=result_type)
# -- learning loop -----------------------------------------------------------
# Learning database calls (SQLite file or PostgreSQL): short transactions; a
# failure is a lock timeout or a dropped connection, worth a few quick retries.
# They do not heartbeat, so a call lost with its worker is retried only after
# this timeout: 10 s (was 30) keeps a killed worker's round waiting seconds,
# while a transaction still has far more time than it takes (milliseconds).
DB_TIMEOUT = timedelta(seconds=10)
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
)

# Loading the worker's GATE_SIGNERS file (a local read). A missing or bad file is
# retried without limit: the gate must not open unauthenticated, and the fix
# (editing the file) is picked up by the next attempt.
SIGNERS_TIMEOUT = timedelta(seconds=30)
SIGNERS_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
