"""The command-line interface (``python starter.py`` / ``orchestrator``).

One module per orchestration plus the shared pieces: ``common`` (client
connection, error printing, ``--json`` output), ``server`` (the embedded dev
server), ``codec`` (the codec server of the web UI), ``gates`` (status,
decisions, results of any workflow), ``demo``.
"""
