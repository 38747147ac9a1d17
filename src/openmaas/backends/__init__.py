"""Backends: one small async interface over every kind of upstream."""

from openmaas.backends.base import Backend, create_backend

__all__ = ["Backend", "create_backend"]
