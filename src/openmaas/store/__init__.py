"""Durable state: tenants, plans, API keys and the usage ledger (SQLite or PostgreSQL)."""
