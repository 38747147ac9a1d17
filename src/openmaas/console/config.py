"""The ``console:`` slice of the settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ConsoleSettings(BaseModel):
    """The web console at ``/console``: sign-in sessions last ``session_hours`` from sign-in;
    ``secure_cookie``: null sets the cookie's ``Secure`` flag when the request came over TLS (or a proxy
    said ``x-forwarded-proto: https``), true/false forces it."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    session_hours: float = Field(default=8.0, gt=0, le=24 * 30)
    secure_cookie: bool | None = None
