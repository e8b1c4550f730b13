"""Opaque page tokens for keyset pagination (aip.dev/158).

A token carries the last key of the previous page and a fingerprint of the query it belongs to, so
that a token replayed against a different query (other meter, range or order) is refused instead of
silently skipping or repeating rows. Tokens are not secrets: a forged one can only choose where a
page starts, which the caller could do with `start`/`end` anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from meterdata.errors import InvalidArgument

_VERSION = 1


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def encode_token(query: str, after: str) -> str:
    raw = json.dumps({"v": _VERSION, "q": query, "after": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, query: str) -> str | None:
    """The key after which the page starts, or None for the first page."""
    if not token:
        return None
    try:
        payload: Any = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        valid = isinstance(payload, dict) and payload.get("v") == _VERSION and isinstance(payload.get("after"), str)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        valid = False
    if not valid:
        raise InvalidArgument("page_token", "not a page token issued by this service")
    if payload["q"] != query:
        raise InvalidArgument("page_token", "the page token belongs to a different query: repeat the same parameters")
    return str(payload["after"])


def check_page_size(page_size: int, default: int, maximum: int) -> int:
    if page_size < 0:
        raise InvalidArgument("page_size", f"must be between 0 and {maximum}, got {page_size}")
    if page_size > maximum:
        raise InvalidArgument("page_size", f"at most {maximum}, got {page_size}")
    return page_size or default
