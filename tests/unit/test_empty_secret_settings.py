"""An empty secret variable means unset: docker-compose passes `${ANTHROPIC_API_KEY:-}`
as an empty string when `.env` lacks it, and that must not switch on a provider."""

from __future__ import annotations

from settings import load_settings


def test_empty_secret_variables_mean_unset(monkeypatch):
    for name in ("ANTHROPIC_API_KEY", "EXA_API_KEY", "GITHUB_TOKEN", "GITHUB_REPOSITORY"):
        monkeypatch.setenv(name, "")
    monkeypatch.delenv("LLM_PROVIDER", raising=False)
    settings = load_settings(_env_file=None)
    assert settings.anthropic_api_key is None and settings.exa_api_key is None
    assert settings.github_token is None and not settings.github_enabled
    assert settings.effective_llm_provider == "offline"
    assert "ANTHROPIC_API_KEY" in settings.llm_provider_notice()
    assert settings.secrets() == {}
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-123456")
    keyed = load_settings(_env_file=None)
    assert keyed.effective_llm_provider == "anthropic"
    assert keyed.secrets() == {"ANTHROPIC_API_KEY": "sk-ant-123456"}
