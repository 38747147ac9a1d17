"""Backends: one small async interface over every kind of upstream."""

from openmaas.backends.base import Backend

__all__ = ["Backend"]
