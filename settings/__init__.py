"""Every environment variable the worker and the CLI read, validated once.

One module per concern, each a settings class whose fields are the environment
variables of the same name in upper case (values also come from a ``.env``
file in the working directory):

* ``settings.core``: task queue, web UI, ORCHESTRATOR_HOME, gate timing;
* ``settings.agents``: the SDLC agent runners; ``settings.llm``: the LLM layer;
* ``settings.analysis``, ``settings.github``, ``settings.workstream``,
  ``settings.learning``: one per orchestration or outside system;
* ``settings.secrets``: secret names to scrub and the agents' secret grants;
* ``settings.performance``: dev-server tuning, recovery, worker concurrency
  (:class:`PerformanceSettings`, loaded on its own);
* ``settings.observability``: metrics, tracing and the log format (loaded on
  its own).

:class:`Settings` combines the per-concern classes (and checks what spans
them). The Temporal connection (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS*, TEMPORAL_PROFILE) is read by
``temporalio.envconfig`` in ``temporal_plumbing.client``. Workflows never read
settings: the CLI copies what a workflow needs into its input.
"""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from models.llm import model_price
from settings.agents import AgentSettings
from settings.analysis import AnalysisSettings
from settings.base import Seconds, SettingsError, load
from settings.core import CoreSettings
from settings.github import GitHubSettings
from settings.learning import LearningSettings
from settings.llm import DEFAULT_LLM_PRICES, LlmSettings
from settings.performance import PerformanceSettings, load_performance_settings
from settings.secrets import SecretSettings
from settings.workstream import WorkstreamSettings

__all__ = ["DEFAULT_LLM_PRICES", "PerformanceSettings", "Seconds", "Settings", "SettingsError",
           "load_performance_settings", "load_settings"]


class Settings(AgentSettings, LlmSettings, AnalysisSettings, GitHubSettings,
               WorkstreamSettings, LearningSettings, SecretSettings, CoreSettings):
    """Process settings: every per-concern settings class in one object."""

    def secrets(self) -> dict[str, str]:
        """Variable name -> value of the secrets these settings hold (also when read
        from ``.env``); unset ones are left out."""
        held = {"ANTHROPIC_API_KEY": self.anthropic_api_key, "GITHUB_TOKEN": self.github_token,
                "EXA_API_KEY": self.exa_api_key}
        return {name: v.get_secret_value() for name, v in held.items() if v is not None}

    @model_validator(mode="after")
    def _check_runner(self) -> Settings:
        if self.agent_runner == "command" and not self.agent_command.strip():
            raise ValueError(
                "AGENT_RUNNER=command needs AGENT_COMMAND, the shell command that writes "
                "the spec (it gets the request on stdin and SDLC_* variables)")
        if self.agent_runner == "anthropic" and self.anthropic_api_key is None:
            raise ValueError("AGENT_RUNNER=anthropic needs ANTHROPIC_API_KEY")
        if self.llm_provider == "anthropic" and self.anthropic_api_key is None:
            raise ValueError("LLM_PROVIDER=anthropic needs ANTHROPIC_API_KEY (or set "
                             "LLM_PROVIDER=offline)")
        if self.anthropic_api_key is not None:
            for model in {self.llm_model, *self.llm_phase_models.values()}:
                if model_price(self.llm_prices, model) is None:
                    raise ValueError(f"model {model!r} has no price in LLM_PRICES; add it "
                                     "so the cost ledger and budget work")
        return self


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings.

    Raises:
        SettingsError: a variable is invalid; the message names each one and why.
    """
    return load(Settings, overrides)
