"""The process's one Temporal runtime, and how a process that used it exits."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from temporalio.runtime import Runtime, TelemetryConfig

_RUNTIME: Runtime | None = None


def process_runtime() -> Runtime:
    """The one ``temporalio.runtime.Runtime`` of this process, made on first use and
    passed to every client, worker and test environment of the process.

    One explicit runtime (rather than the lazily created default) makes the
    process own the Rust thread pool's lifetime; it is also made the default,
    so code that passes no runtime (a Replayer, a plain ``Client.connect``)
    shares it. See :func:`exit_process` for why short-lived processes also
    leave without interpreter finalization.
    """
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = Runtime(telemetry=TelemetryConfig())
        Runtime.set_default(_RUNTIME, error_if_already_set=False)
    return _RUNTIME


def exit_process(code: int) -> NoReturn:
    """End a process that used a Temporal client, skipping interpreter finalization.

    The SDK's Rust threads can still call into Python while the interpreter is
    finalizing, and a short-lived process then aborts with "Fatal Python error:
    PyGILState_Release" (temporalio/sdk-python issue 300). Our work is done and
    flushed by then, so leave with ``os._exit``.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
