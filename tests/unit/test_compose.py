"""docker-compose.yml and the Dockerfile, checked by parsing (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def depends(service: str) -> dict:
    value = SERVICES[service].get("depends_on", {})
    return value if isinstance(value, dict) else {name: {} for name in value}


def test_the_stack_has_its_services():
    assert set(SERVICES) == {"postgresql", "temporal", "temporal-ui", "worker", "codec-server",
                             "prometheus", "grafana"}


def test_the_codec_server_runs_with_the_workers_keys_on_loopback():
    codec = SERVICES["codec-server"]
    assert "python starter.py codec-server" in " ".join(codec["command"])
    assert codec["environment"]["PAYLOAD_KEYS"] == SERVICES["worker"]["environment"][
        "PAYLOAD_KEYS"] == "${PAYLOAD_KEYS:-}"
    assert codec["ports"] == ["127.0.0.1:8081:8081"]
    assert "TEMPORAL_CODEC_ENDPOINT" in SERVICES["temporal-ui"]["environment"]


def test_temporal_runs_on_the_postgresql_service():
    env = SERVICES["temporal"]["environment"]
    assert env["DB"].startswith("postgres") and env["POSTGRES_SEEDS"] == "postgresql"
    assert depends("temporal")["postgresql"]["condition"] == "service_healthy"
    assert "healthcheck" in SERVICES["postgresql"]


def published(port: str, environ: dict[str, str]) -> list[str]:
    """The host addresses a service's ``port`` is published on, with compose's
    ``${VAR:-default}`` interpolation done for ``environ``."""
    out = []
    for service in SERVICES.values():
        for mapping in service.get("ports", []):
            text = re.sub(r"\$\{(\w+):-([^}]*)\}",
                          lambda m: environ.get(m.group(1)) or m.group(2), mapping)
            parts = text.split(":")
            if len(parts) == 3 and parts[1] == port:
                out.append(parts[0])
            elif len(parts) == 2 and parts[0] == port:
                out.append("0.0.0.0")  # compose publishes HOST:CONTAINER on every interface
    return out


def test_frontend_and_web_ui_are_on_loopback_unless_the_user_opts_in():
    assert published("7233", {}) == ["127.0.0.1"]
    assert published("8233", {}) == ["127.0.0.1"]
    assert published("7233", {"PUBLISH_ADDRESS": "0.0.0.0"}) == ["0.0.0.0"]
    assert published("8233", {"PUBLISH_ADDRESS": "0.0.0.0"}) == ["0.0.0.0"]
    assert SERVICES["temporal"]["ports"][0].endswith(":7233:7233")
    assert SERVICES["temporal-ui"]["ports"][0].endswith(":8233:8080")
    assert SERVICES["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_the_worker_is_built_here_and_wired_to_the_temporal_service():
    worker = SERVICES["worker"]
    assert worker["build"] == "."
    host, port = worker["environment"]["TEMPORAL_ADDRESS"].split(":")
    assert host in SERVICES and port == "7233"
    assert depends("worker")["temporal"]["condition"] == "service_healthy"
    assert worker["environment"]["ORCHESTRATOR_HOME"] == "/data"
    assert any(v.endswith(":/data") for v in worker["volumes"])


def test_the_dockerfile_runs_the_worker_with_git():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["python", "worker.py"]' in dockerfile
    assert "install -y --no-install-recommends git" in dockerfile


def test_the_worker_gets_the_trust_settings():
    env = SERVICES["worker"]["environment"]
    for name in ("SECRET_ENV", "AGENT_SECRET_ENV", "WORKSTREAM_PYTHON_MODULES"):
        assert env[name] == f"${{{name}:-}}"


def test_prometheus_scrapes_the_workers_metrics_port_and_grafana_loads_the_dashboard():
    bind = SERVICES["worker"]["environment"]["METRICS_BIND"]
    host, port = bind.rsplit(":", 1)
    assert host == "0.0.0.0"  # the compose network only: the worker publishes no port
    assert "ports" not in SERVICES["worker"]
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["dns_sd_configs"][0]["names"] == ["worker"]
    assert job["dns_sd_configs"][0]["port"] == int(port)
    prom = SERVICES["prometheus"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prom["volumes"]
    assert prom["ports"] == ["127.0.0.1:9090:9090"]
    grafana = SERVICES["grafana"]
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]
    mounted = {v.split(":")[0] for v in grafana["volumes"]}
    assert {"./deploy/grafana/provisioning", "./deploy/grafana/orchestrator.json"} <= mounted
    for source in mounted:
        assert (ROOT / source).exists(), source
