"""The Temporal client: connection profile, data converter and interceptors.

Every ``Client.connect``, every test environment and every ``Replayer`` gets
its data converter from :func:`data_converter` and its interceptors from
:func:`client_interceptors`, so they all read and write the same payloads.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

from settings.codec import CodecSettings, load_codec_settings
from temporal_plumbing.codec import AesGcmCodec
from temporal_plumbing.runtime import process_runtime
from temporal_plumbing.tracing import tracing_interceptors

DEFAULT_TEMPORAL_ADDRESS = "localhost:7233"


def temporal_connect_config() -> dict[str, Any]:
    """Keyword arguments for ``Client.connect`` from ``temporalio.envconfig``
    (TEMPORAL_* variables and the Temporal config file), defaulting to
    ``localhost:7233`` and namespace ``default``."""
    config = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", DEFAULT_TEMPORAL_ADDRESS)
    return config


def data_converter(codec: CodecSettings | None = None) -> DataConverter:
    """The data converter of every client, test environment and replayer: the
    pydantic data converter with :class:`AesGcmCodec`; with PAYLOAD_KEYS set
    (``codec``, default: the environment) the codec encrypts, and failure messages and
    stack traces moved into the failure's encoded attributes so they are
    encrypted too.

    Raises:
        SettingsError: PAYLOAD_KEYS or another codec setting is invalid.
    """
    keys = (codec or load_codec_settings()).keys
    if not keys:
        # Nothing is encrypted; the codec only turns an encrypted payload (a history
        # written with PAYLOAD_KEYS) into an error that says to set the keys.
        return dataclasses.replace(pydantic_data_converter, payload_codec=AesGcmCodec([]))
    return dataclasses.replace(
        pydantic_data_converter, payload_codec=AesGcmCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes)


def client_interceptors() -> list[Interceptor]:
    """The interceptors of every client (a client interceptor that is also a worker
    interceptor applies to the workers made from that client too): OpenTelemetry's
    ``TracingInterceptor`` when tracing is on (``temporal_plumbing.tracing``:
    OTEL_EXPORTER_OTLP_ENDPOINT), else none."""
    return tracing_interceptors()


async def connect_client(runtime: Runtime | None = None, **overrides: Any) -> Client:
    """A client for the configured server (the one connection path of the worker,
    the CLI and the benchmarks' worker processes), with :func:`data_converter`,
    :func:`client_interceptors` and the process runtime.

    Args:
        runtime: the runtime (default: :func:`process_runtime`), e.g. a test's own
            that serves metrics (``temporal_plumbing.runtime.build_runtime``).
        overrides: ``Client.connect`` arguments that win over the envconfig profile
            (e.g. ``target_host`` of a benchmark's own server).

    Raises:
        ConnectionError: no Temporal server answers at the configured address;
            the message names the address and how to start one.
    """
    config = {**temporal_connect_config(), **overrides}
    try:
        return await Client.connect(**config, data_converter=data_converter(),
                                    interceptors=client_interceptors(),
                                    runtime=runtime or process_runtime())
    except RuntimeError as err:
        raise ConnectionError(
            f"cannot reach Temporal at {config['target_host']} ({err}); start one with "
            "`python starter.py dev-server` or set TEMPORAL_ADDRESS") from None
