"""Workflows: one module per orchestration; deterministic code only."""
