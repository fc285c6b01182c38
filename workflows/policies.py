"""Timeouts and retry policies of every activity call, as named constants.

Retries belong to Temporal: SDK clients inside activities have their own
retries off, and each activity call here says how long one attempt may take
and how failures are retried.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Local git commands: fast, and a failure is usually a lock file or a full disk.
GIT_TIMEOUT = timedelta(seconds=60)
GIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)

# Issue tracker calls (local file or GitHub REST): rate limits set their own delay.
TRACKER_TIMEOUT = timedelta(seconds=60)
TRACKER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=10,
)

# Agent runs: long; they heartbeat every AGENT_HEARTBEAT_EVERY seconds, so a
# worker that died is noticed after AGENT_HEARTBEAT_TIMEOUT, not after the
# whole start-to-close timeout.
AGENT_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
AGENT_TIMEOUT_MARGIN = timedelta(seconds=60)
AGENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=3,
)

# LLM calls (issue 4): one attempt covers the model call and its re-asks after
# invalid structured output; rate limits and overload (429, 529) retry after the
# server's retry-after (next_retry_delay), else with this backoff.
LLM_TIMEOUT = timedelta(minutes=20)
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
