"""Key material. A key is shown once; only its SHA-256 is stored.

Keys carry ~240 bits of randomness, so a fast hash is the right one (no
password stretching needed) and lookups by hash are constant-time in the key.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "om-"
DISPLAY_CHARS = 11  # "om-" + 8 characters: enough to tell keys apart, far too few to use


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(30)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_CHARS] + "…"


def new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(8)}"
