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

# -- learning loop -----------------------------------------------------------
# Learning database calls (SQLite file or PostgreSQL): short transactions; a
# failure is a lock timeout or a dropped connection, worth a few quick retries.
DB_TIMEOUT = timedelta(seconds=30)
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
)
