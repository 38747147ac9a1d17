"""Pricing, token counting, the usage ledger and budget reservations."""
