"""Page tokens of the query service: the shared keyset tokens, bound to the query that issued them.

A token carries the last key of the previous page and a fingerprint of the query, so a token
replayed against a different query (other meter, range or order) is refused instead of silently
skipping or repeating rows. Tokens are not secrets: a forged one can only choose where a page
starts, which the caller could do with `start`/`end` anyway.
"""

from __future__ import annotations

import hashlib
import json

from meterdata.errors import InvalidArgument
from meterdata.paging import decode_page_token, encode_page_token, page_size

__all__ = ["decode_token", "encode_token", "fingerprint", "page_size"]


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def encode_token(query: str, after: str) -> str:
    return encode_page_token({"q": query, "after": after})


def decode_token(token: str, query: str) -> str | None:
    """The key after which the page starts, or None for the first page."""
    if not token:
        return None
    position = decode_page_token(token, {"q", "after"})
    if not isinstance(position["after"], str):
        raise InvalidArgument("page_token", "is not a page token issued by this service")
    if position["q"] != query:
        raise InvalidArgument("page_token", "belongs to a different query: repeat the parameters of the first page")
    return position["after"]
