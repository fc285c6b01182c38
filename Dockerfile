# The worker image: `docker compose up` builds it (see docker-compose.yml).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir .
# git needs an identity to commit specs and handoff artifacts
RUN git config --system user.name "Durable Orchestrator" \
    && git config --system user.email "orchestrator@localhost"
STOPSIGNAL SIGTERM
CMD ["python", "worker.py"]
