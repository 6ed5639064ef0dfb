"""Keeps credentials out of logs and the manifest."""

from __future__ import annotations

import re
from typing import Any

# scheme://user:password@host/... and scheme://token@host/...: a URI runs to white space (a quote
# may be part of a password).
_URI = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<rest>\S+)")
# key=value query parameters that carry secrets, e.g. ?sig=..., &X-Amz-Signature=...
_SECRET_QUERY = re.compile(
    r"(?i)(?P<key>[?&](?:[a-z0-9_-]*(?:secret|password|passwd|token|signature|sig|credential|key)[a-z0-9_-]*)=)[^&\s]+"
)
_SECRET_KEY = re.compile(r"(?i)secret|password|passwd|token|credential|access[._-]?key|signature|auth")
MASK = "***"


def _mask_userinfo(match: re.Match[str]) -> str:
    # RFC 3986 userinfo ends at the '@' before the host; a typed password may hold '/', '@', ':' or
    # '%' unescaped, so everything up to the LAST '@' of the URI is masked. A path holding '@' is
    # then masked up to it too: a lost path in a message is the safe side of a leaked password.
    rest = match["rest"]
    at = rest.rfind("@")
    return match[0] if at < 0 else f"{match['scheme']}{MASK}{rest[at:]}"


def redact_text(text: str) -> str:
    """The text with URI user-info and secret-looking query parameters masked."""
    return _SECRET_QUERY.sub(rf"\g<key>{MASK}", _URI.sub(_mask_userinfo, text))


def redact(value: Any, key: str = "") -> Any:
    """A copy of a JSON-like value with secrets masked: by key name, and inside URIs."""
    if key and _SECRET_KEY.search(key) and isinstance(value, (str, int, float)):
        return MASK
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
