"""OpenMaaS: one OpenAI-compatible endpoint over local and cloud models."""

__version__ = "0.1.0"
