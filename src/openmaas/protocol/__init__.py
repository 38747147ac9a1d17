"""Wire types (OpenAI and Anthropic). Depends on pydantic only."""
