"""``python starter.py ...`` (also installed as ``orchestrator``): the command-line interface.

Run ``python starter.py --help`` for the commands.
"""

from __future__ import annotations

import argparse
import sys

from cli import analysis, codec, demo, gates, learning, llm, review, sdlc, server, workstream
from cli.common import OneLineParser, run
from temporal_plumbing.runtime import exit_process


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = OneLineParser(
        prog="orchestrator",
        description="Durable Orchestrator: human-gated, AI-assisted work on Temporal.",
    )
    sub = parser.add_subparsers(dest="name", required=True, metavar="COMMAND")
    server.add_parser(sub)
    codec.add_parser(sub)
    demo.add_parser(sub)
    sdlc.add_parser(sub)
    analysis.add_parser(sub)
    gates.add_parsers(sub)
    review.add_parsers(sub)
    llm.add_parsers(sub)
    workstream.add_parser(sub)
    learning.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return run(args.command, args)


def entry() -> None:
    """The ``orchestrator`` console script: ``main`` then a clean process exit."""
    exit_process(main())


def learn_entry() -> None:
    """The ``learn`` console script: ``learn ARGS`` is ``orchestrator learn ARGS``."""
    exit_process(main(["learn", *sys.argv[1:]]))


if __name__ == "__main__":
    entry()
