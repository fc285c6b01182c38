"""One home for the Temporal plumbing that the worker, the CLI, the tests, the
benchmarks and the replayer share.

* ``temporal_plumbing.runtime``: the process's one ``Runtime`` (telemetry) and the
  exit that skips interpreter finalization;
* ``temporal_plumbing.client``: the connection (``temporalio.envconfig`` profile),
  the data converter (pydantic, plus the payload codec when one is configured)
  and the interceptors; :func:`temporal_plumbing.client.connect_client`;
* ``temporal_plumbing.workers``: worker options from the performance settings and
  the replayer;
* ``temporal_plumbing.search_attributes``: registering our search attributes;
* ``temporal_plumbing.environments``: the embedded dev server (command line,
  tuning) and the test servers of the fixtures and benchmarks.

It imports ``settings``, ``models`` and ``workflows.search_attributes`` only,
never ``cli`` or ``worker``.
"""
