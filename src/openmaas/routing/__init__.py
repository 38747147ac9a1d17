"""Resolving public model names to deployments (aliases, capabilities)."""
