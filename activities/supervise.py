"""The direct child of every process an activity starts (agent runners,
workstream shell and python steps, git): a tiny supervisor, standard library
only, run by the worker's interpreter as
``python -I -S supervise.py PARENT_PID GATE_FD COMMAND [ARG ...]``.

The parent-death signal reaches only the process it is set in, so it is set
here (the supervisor), not in the command: when the worker dies, even by
``kill -9``, the supervisor kills its whole process group (the command and
everything it started, e.g. the ``sleep`` a shell step runs) and exits. In turn:

1. The worker started it as the leader of a session and process group of its
   own (its pid is the group's id, the one a fence records), with nothing run
   between fork and exec; it sets its parent-death signal to
   :data:`PARENT_DIED`, which it catches, and exits with its group at once when
   ``PARENT_PID`` is no longer its parent (the worker died before that).
2. ``GATE_FD`` >= 0: waits until the worker writes ``go`` on that pipe (after
   it recorded the group in the fence); EOF (the worker died, or lost the
   fence) ends it with exit code 137 before the command ran.
3. Starts ``COMMAND`` in the same process group, with stdin, stdout and stderr
   its own (so the worker reads the command's output directly) and default
   signal dispositions. A command that cannot be started exits 127 with the
   reason on stderr.
4. Forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the command.
5. When the command ends, kills what it left running in the group, then ends
   the way the command did: the same exit code, or killed by the same signal
   (so the worker sees exit code -N for signal N).

The worker's own kills (timeout, cancel, fence) SIGKILL the whole group, this
process included.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_DIED = signal.SIGRTMIN  # the parent-death signal, caught
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)
RESET = (*FORWARDED, signal.SIGPIPE, signal.SIGXFSZ)  # default again in the command
LEFTOVER_WAIT = 5.0  # seconds to keep killing what the command left in the group
EXIT_NOT_STARTED = 137  # the worker died or lost the fence before the command ran
EXIT_CANNOT_START = 127  # the command cannot be executed


def kill_group() -> None:
    """SIGKILL this process's whole group, this process included."""
    os.killpg(0, signal.SIGKILL)
    os._exit(EXIT_NOT_STARTED)  # not reached


def group_others() -> list[int]:
    """PIDs of the live (not zombie) processes in this process's group but itself."""
    me, pgid = os.getpid(), os.getpgid(0)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(name))
    return found


def kill_leftovers() -> None:
    """SIGKILL every other member of the group until none is left (a member
    could fork between a scan and its kill: the next scan finds the new one)."""
    deadline = time.monotonic() + LEFTOVER_WAIT
    while (others := group_others()) and time.monotonic() < deadline:
        for pid in others:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def end_like(status: int) -> None:
    """Exit the way a child with wait status ``status`` ended."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core of this process
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)  # a signal that does not terminate by default
    os._exit(os.waitstatus_to_exitcode(status))


def main(argv: list[str]) -> None:
    """Run as described in the module docstring; never returns."""
    parent, gate, command = int(argv[1]), int(argv[2]), argv[3:]
    child = 0

    def forward(signum: int, _frame: object) -> None:
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)
        else:  # before the command started: nothing else in the group yet
            os._exit(128 + signum)

    signal.signal(PARENT_DIED, lambda _signum, _frame: kill_group())
    for sig in FORWARDED:
        signal.signal(sig, forward)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(PARENT_DIED), 0, 0, 0)
    if os.getppid() != parent:
        kill_group()
    if gate >= 0:
        if not os.read(gate, 3):
            os._exit(EXIT_NOT_STARTED)
        os.close(gate)
    # signals to forward wait (blocked) until the command's pid is known
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        child = os.posix_spawnp(command[0], command, os.environ,
                                setsigmask=(), setsigdef=RESET)
    except OSError as err:
        print(f"{command[0]}: {err.strerror}", file=sys.stderr)
        os._exit(EXIT_CANNOT_START)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    _, status = os.waitpid(child, 0)
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)  # its pid may be reused now
    kill_leftovers()
    end_like(status)


if __name__ == "__main__":
    main(sys.argv)
