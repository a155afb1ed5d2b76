"""Dialogue settings from the environment (prefix DIALOGUE_)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from .faq import DEFAULT_KNOWLEDGE


class DialogueSettings(BaseSettings):
    """Which policy answers and where its knowledge and LLM are."""

    model_config = SettingsConfigDict(env_prefix="DIALOGUE_", extra="ignore")

    knowledge_file: str = str(DEFAULT_KNOWLEDGE)
    # OpenAI-compatible LLM; empty base_url = offline policy (no LLM server needed).
    llm_base_url: str = ""
    llm_model: str = "gpt-4o-mini"
    llm_api_key: str = ""
    llm_timeout: float = 20.0
    system_prompt: str = (
        "You are a friendly customer-service assistant speaking on a voice call. "
        "Answer in one or two short sentences, without lists or markdown."
    )
