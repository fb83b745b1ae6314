"""The four Kai agents: prompts, settings, schemas and the orchestrator."""
