"""Opaque page tokens for keyset pagination (aip.dev/158): URL-safe base64 of a small JSON object."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from meterdata.errors import InvalidArgument


def encode_page_token(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_page_token(token: str, required: set[str], field: str = "page_token") -> dict[str, Any]:
    """The position a token encodes; InvalidArgument naming `field` when it is not one of ours."""
    try:
        padded = token + "=" * (-len(token) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidArgument(field, "is not a page token issued by this service") from None
    if not isinstance(position, dict) or not required <= set(position):
        raise InvalidArgument(field, "is not a page token issued by this service")
    return position


def page_size(requested: int, default: int, maximum: int, field: str = "page_size") -> int:
    if requested < 0:
        raise InvalidArgument(field, f"must be >= 0, got {requested}")
    if requested > maximum:
        raise InvalidArgument(field, f"must be <= {maximum}, got {requested}")
    return requested or default
