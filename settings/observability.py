"""Settings of operating the worker: Prometheus metrics, OpenTelemetry tracing and
the log format. Loaded on their own (:func:`load_observability_settings`), so the
CLI and the worker read them without the orchestrations' settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from settings.base import EnvSettings, load


class ObservabilitySettings(EnvSettings):
    """METRICS_BIND, OTEL_EXPORTER_OTLP_ENDPOINT, LOG_FORMAT, LOG_LEVEL."""

    metrics_bind: str | None = Field(
        None, description="HOST:PORT where the worker serves Prometheus metrics at /metrics "
        "(unset: no metrics endpoint)")
    otel_exporter_otlp_endpoint: str | None = Field(
        None, description="OTLP/gRPC collector URL (e.g. http://localhost:4317); set: the "
        "worker and the CLI trace through the OpenTelemetry interceptor")
    otel_service_name: str = Field(
        "durable-orchestrator", description="service.name of the exported spans")
    log_format: Literal["text", "json"] = Field(
        "text", description="worker log lines: `text` for people, `json` (one object a "
        "line) for log shippers")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="lowest level the worker logs")

    @field_validator("metrics_bind", "otel_exporter_otlp_endpoint")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("metrics_bind")
    @classmethod
    def _check_bind(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"{value!r} is not HOST:PORT, e.g. 127.0.0.1:9464")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


def load_observability_settings() -> ObservabilitySettings:
    """Read and validate the metrics, tracing and logging settings.

    Raises:
        SettingsError: a variable is invalid; the message names it.
    """
    return load(ObservabilitySettings, {})
