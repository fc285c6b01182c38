"""Activities: one module per outside system, as classes with injected clients.

Workflows import these classes only to name activity methods; the worker
builds the instances (see ``worker.build_activities``).
"""
