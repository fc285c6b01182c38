"""The child process of a ``python`` workstream step (run by ``ws_run_python``
through the subprocess layer; standard library only).

Reads one JSON request on stdin: ``callable`` (``package.module:function``),
``kwargs``, ``paths`` (prepended to ``sys.path``: the run's workspace first, then
the worker's import path) and ``result`` (the file the JSON of the return value is
written to). A coroutine function is run with :func:`asyncio.run`.

Exit codes: 0 the call returned; 1 it raised (traceback on stderr);
:data:`EXIT_CANNOT_IMPORT` the callable cannot be imported;
:data:`EXIT_NOT_DEFINED_HERE` the name is not a function defined in the module
(e.g. ``os.system`` imported by it). The reason is the last line of stderr.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys
import traceback

EXIT_CANNOT_IMPORT = 64
EXIT_NOT_DEFINED_HERE = 65


def main() -> int:
    """Run the request on stdin; return the exit code (see the module docstring)."""
    req = json.loads(sys.stdin.buffer.read() or b"{}")
    sys.path[:0] = [p for p in req.get("paths", []) if p]
    target = str(req.get("callable", ""))
    module_name, _, func_name = target.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError, ValueError) as err:
        print(f"cannot import {target!r} ({type(err).__name__}: {err})", file=sys.stderr)
        return EXIT_CANNOT_IMPORT
    if not callable(func) or getattr(func, "__module__", None) != module_name:
        print(f"{target!r} is not a function defined in {module_name}", file=sys.stderr)
        return EXIT_NOT_DEFINED_HERE
    kwargs = req.get("kwargs") or {}
    try:
        result = (asyncio.run(func(**kwargs)) if inspect.iscoroutinefunction(func)
                  else func(**kwargs))
    except Exception:  # noqa: BLE001 - the step's own failure: traceback, exit 1
        traceback.print_exc()
        return 1
    with open(req["result"], "w", encoding="utf-8") as out:
        out.write(json.dumps(result, default=str, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
