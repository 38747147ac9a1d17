"""The HTTP server: one app factory, thin routes, one error envelope."""

from openmaas.server.app import create_app

__all__ = ["create_app"]
