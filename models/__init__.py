"""Pydantic models only: workflow inputs and results, signal/update/query payloads, state.

No I/O and no imports from the rest of the project, so workflows can import
these inside the sandbox cheaply.
"""
