"""The worker's authority on who may sign gate decisions: the GATE_SIGNERS file.

A run loads the allowed signers through :meth:`GateSignerActivities.load_gate_signers`
before its first gate opens; the result is kept in the run's history, so the update
validator and the signal handler verify signatures deterministically (and replay
gives the same answer). Editing the file takes effect for runs (and continued-as-new
runs) that load it afterwards.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.signatures import GateSigners, SignatureError, parse_allowed_signers


def read_gate_signers(path: Path | None) -> GateSigners:
    """The allowed signers in ``path`` (ssh's allowed_signers format); not configured
    when ``path`` is None.

    Raises:
        SignatureError: the file cannot be read or a line cannot be used; the message
            names the file (and the line).
    """
    if path is None:
        return GateSigners(configured=False)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SignatureError(f"GATE_SIGNERS {path}: {err.strerror or err}") from None
    try:
        signers = parse_allowed_signers(text)
    except SignatureError as err:
        raise SignatureError(f"GATE_SIGNERS {path}: {err}") from None
    return GateSigners(configured=True, source=str(path), signers=signers)


class GateSignerActivities:
    """Loads GATE_SIGNERS for runs; ``path`` None = signatures are not required."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    @activity.defn(name="load_gate_signers")
    async def load_gate_signers(self) -> GateSigners:
        """The worker's allowed signers, read now.

        Raises:
            ApplicationError: (``GateSignersUnreadable``, retried) the file is missing
                or has a bad line: the gate stays closed until it is fixed, rather than
                opening without authentication.
        """
        try:
            return await asyncio.to_thread(read_gate_signers, self.path)
        except SignatureError as err:
            raise ApplicationError(str(err), type="GateSignersUnreadable") from None
