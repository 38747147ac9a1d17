"""The one error tree. Every failure a client can see is an ``OpenMaaSError``.

Foreign exceptions (pydantic, aiohttp, OS errors) are translated where they
enter; the OpenAI error envelope is built from these in exactly one place
(``openmaas.server.errors``). Messages never carry secrets: upstream bodies are
passed through ``redact`` before they are quoted.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError


class OpenMaaSError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(OpenMaaSError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class UnsupportedCapability(InvalidRequest):
    code = "unsupported_capability"


class AuthenticationFailed(OpenMaaSError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(OpenMaaSError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class PrivacyPolicyViolation(PermissionDenied):
    """Sensitive data under ``local_only`` and no local deployment can serve it: refused, never leaked."""

    code = "privacy_policy_violation"


class RateLimitExceeded(OpenMaaSError):
    """Our own limiter refused (RPM/TPM); an upstream's 429 is ``upstream_rate_limited``."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class BudgetExceeded(OpenMaaSError):
    """A budget or plan quota would be exceeded (402: retrying does not help until it resets)."""

    status = 402
    type = "insufficient_quota"
    code = "budget_exceeded"


class ServiceUnavailable(OpenMaaSError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class NotFound(OpenMaaSError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(OpenMaaSError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(OpenMaaSError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaType(OpenMaaSError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class UpstreamError(OpenMaaSError):
    """The upstream failed or answered with something we cannot use (502)."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    retryable = True


class UpstreamRateLimited(UpstreamError):
    """The upstream said 429; distinct from our own limiter's ``rate_limit_exceeded``."""

    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"


class UpstreamUnavailable(UpstreamError):
    status = 503
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamRejected(InvalidRequest):
    """The upstream refused the request itself (its 4xx): the client's to fix."""

    code = "upstream_rejected"
    retryable = False


_SECRETISH = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|sk-ant-[A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9._\-]+|"
    r"(?i:api[_-]?key)[\"'=:\s]+[A-Za-z0-9._\-]{8,})"
)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove known secrets and anything shaped like an API key from ``text``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _SECRETISH.sub("[redacted]", text)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-after", "function-before")) or "[" in str(part):
            continue  # pydantic's internal validator / union tags, not a field
        else:
            out += ("." if out else "") + str(part)
    return out


def from_validation_error(exc: ValidationError) -> InvalidRequest:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    param = _loc(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid value"))
    if first.get("type") == "missing":
        text = f"Missing required parameter: '{param}'."
    elif first.get("type") == "extra_forbidden":
        text = f"Unrecognized parameter: '{param}'."
    else:
        text = f"Invalid value for '{param}': {message}." if param else f"Invalid request: {message}."
    if len(errors) > 1:
        text += f" ({len(errors) - 1} more error(s))"
    return InvalidRequest(text, param=param or None, code="invalid_value")
