"""The worker's log: one line per record, a traceback only for bugs.

An *expected* failure (a step's non-zero exit, a refused decision, a rate
limit, an agent timeout: anything our code raises as
``temporalio.exceptions.ApplicationError`` on purpose, and the activity and
child-workflow failures caused by one) is logged as one line with the workflow
ID, the workflow type, the error type and message, without the Python
traceback the SDK attaches (``Completing activity as failed``). Any other
exception is a bug and keeps its traceback.

``LOG_FORMAT=text`` (the default)::

    2026-12-02T07:30:00Z WARNING temporalio.activity: Completing activity as failed \
workflow_id=ws-1 workflow_type=WorkstreamWorkflow activity_type=ws_run_shell attempt=1 \
error=ApplicationError error_type=ExitCode1 non_retryable=true error_message="step 'test' ..."

``LOG_FORMAT=json``: one JSON object a line with ``time``, ``level``,
``logger``, ``message``, the same context fields and, for a bug,
``traceback``. Newlines inside a message are escaped, so a line is a record.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, TextIO

import temporalio.activity
import temporalio.workflow
from temporalio.exceptions import ApplicationError, FailureError

# Context fields, in print order, from the SDK's ``temporal_workflow`` /
# ``temporal_activity`` log extras.
CONTEXT_FIELDS = ("workflow_id", "workflow_type", "run_id", "activity_type", "activity_id",
                  "attempt", "task_queue", "namespace")
_MAX_MESSAGE = 4000  # characters of an error message kept on the line


def expected_failure(exc: BaseException | None) -> ApplicationError | None:
    """The ApplicationError that makes ``exc`` an expected failure, or None for a bug.

    Expected: an ``ApplicationError`` (our code raised it on purpose), or a
    Temporal failure (``ActivityError``, ``ChildWorkflowError``,
    ``WorkflowFailureError``...) whose cause chain ends in one.
    """
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, ApplicationError):
            return exc
        if not isinstance(exc, FailureError) and type(exc).__name__ != "WorkflowFailureError":
            return None
        exc = exc.__cause__ or getattr(exc, "cause", None)
        seen += 1
    return None


def _one_line(text: str) -> str:
    text = text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of ``record``: time, level, logger, message, the
    workflow/activity context the SDK put on it, and the error (type, message,
    ``non_retryable``) or, for a bug, the traceback."""
    fields: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
    }
    context: dict[str, Any] = {}
    for extra in ("temporal_workflow", "temporal_activity"):
        value = getattr(record, extra, None)
        if isinstance(value, dict):
            context.update(value)
    fields.update({k: context[k] for k in CONTEXT_FIELDS if context.get(k) not in (None, "")})
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        known = expected_failure(exc)
        if known is not None:
            fields["error"] = type(exc).__name__
            fields["error_type"] = known.type or "ApplicationError"
            fields["non_retryable"] = known.non_retryable
            fields["error_message"] = known.message
        else:
            fields["error"] = type(exc).__name__
            fields["error_message"] = str(exc)
            fields["traceback"] = "".join(traceback.format_exception(*record.exc_info))
    return fields


class OneLineFormatter(logging.Formatter):
    """Formats a record as one line, ``text`` (``key=value``) or ``json``; a bug's
    traceback follows a text line (lines of its own) or is the ``traceback``
    field of a JSON line (see the module docstring)."""

    def __init__(self, fmt: str = "text") -> None:
        super().__init__()
        if fmt not in ("text", "json"):
            raise ValueError(f"log format {fmt!r} is not text or json")
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        if self.fmt == "json":
            return json.dumps(fields, ensure_ascii=False, default=str)
        trace = fields.pop("traceback", None)
        head = (f"{fields.pop('time')} {fields.pop('level')} {fields.pop('logger')}: "
                f"{_one_line(fields.pop('message'))}")
        parts = [head]
        for key, value in fields.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            text = text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."
            plain = text and not any(c in text for c in ' "=\\\n\r\t')
            parts.append(f"{key}={text if plain else json.dumps(text, ensure_ascii=False)}")
        line = " ".join(parts)
        return f"{line}\n{trace.rstrip()}" if trace else line


def configure_logging(fmt: str = "text", level: str = "INFO",
                      stream: TextIO | None = None) -> logging.Handler:
    """Send every log record of the process (the SDK's, ours) through
    :class:`OneLineFormatter` to ``stream`` (default: stderr), at ``level`` and up.

    The SDK's workflow and activity loggers are told to put their context in
    the record's extras only (not also appended to the message), so the context
    appears once, as fields.

    Returns:
        The installed handler (remove it with ``logging.getLogger().removeHandler``).

    Raises:
        ValueError: ``fmt`` is not ``text`` or ``json``.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(OneLineFormatter(fmt))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h.formatter, OneLineFormatter)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    temporalio.activity.logger.activity_info_on_message = False
    temporalio.workflow.logger.workflow_info_on_message = False
    return handler
