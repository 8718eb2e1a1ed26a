"""CORS for browser SDKs (pure): reflect the request's Origin with credentials, per-project allow-list.

The seed's SDK sends ``credentials: 'include'``, so ``*`` is not allowed: the answer names the origin and
sets ``Access-Control-Allow-Credentials: true``.  A preflight carries no API key, so it cannot know the
project: it is answered for any origin, and the project's ``cors_origins`` allow-list is enforced on the
actual request (the gateway answers 401 to a browser request whose Origin the key's project does not
allow, and nothing of it is accepted).
"""

from __future__ import annotations

__all__ = ["ALLOWED_HEADERS", "cors_headers", "preflight_headers"]

ALLOWED_HEADERS = "X-PG-API-Key, Authorization, Content-Type, Content-Encoding"
_EXPOSED = "Retry-After"
_MAX_AGE = "86400"


def cors_headers(origin: str | None) -> dict[str, str]:
    """Headers for an actual response to a request from ``origin`` (none when there is no Origin)."""
    if not origin:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": _EXPOSED,
        "Vary": "Origin",
    }


def preflight_headers(origin: str | None) -> dict[str, str]:
    """Headers of the 204 answer to ``OPTIONS /v1/events``."""
    headers = {
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Max-Age": _MAX_AGE,
        "Vary": "Origin",
    }
    if origin:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
    return headers
