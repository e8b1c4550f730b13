"""API keys: their format, the hash stored in place of the secret, and all SQL of the `api_keys` table.

A key reads `mdk_<id>_<secret>`. The id (12 hex digits) names the row and may appear in logs and
listings; the secret (32 random bytes, URL-safe base64) is shown once, when the key is created, and
only its SHA-256 is stored. A fast hash is the right one here: the secret carries 256 bits of entropy,
so there is no dictionary to try and no brute force to slow down (scrypt or bcrypt protect
low-entropy passwords), and checking a key costs microseconds.

Used by `python -m gateway keys` (create, revoke, list), by `make run` (the development key) and by
the query service, which verifies keys for the gateway (`ApiKeyService.VerifyApiKey`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Engine, text

from meterdata.tenancy import check_tenant

Scope = Literal["read", "ingest", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "ingest", "admin")
PREFIX = "mdk"
_KEY = re.compile(rf"{PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})")


@dataclass(frozen=True)
class Principal:
    """Who presents a valid key: the key's id, its tenant and its scope."""

    key_id: str
    tenant: str
    scope: Scope


@dataclass(frozen=True)
class NewKey:
    principal: Principal
    key: str  # the full key: shown once, never stored
    created_at: datetime


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    tenant: str
    scope: Scope
    note: str
    created_at: datetime
    revoked_at: datetime | None


def parse_key(key: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    match = _KEY.fullmatch(key)
    return (match.group(1), match.group(2)) if match else None


def secret_hash(key_id: str, secret: str) -> bytes:
    return hashlib.sha256(f"{key_id}:{secret}".encode()).digest()


def check_scope(scope: str) -> Scope:
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}: one of {', '.join(SCOPES)}")
    return scope  # type: ignore[return-value]


def create_key(engine: Engine, tenant: str, scope: str, note: str = "") -> NewKey:
    """A new key of `tenant` with `scope`; the returned `key` is the only copy of its secret."""
    check_tenant(tenant)
    check_scope(scope)
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    with engine.begin() as connection:
        created_at = connection.execute(
            text(
                "INSERT INTO api_keys (id, tenant, scope, secret_sha256, note) "
                "VALUES (:id, :tenant, :scope, :hash, :note) RETURNING created_at"
            ),
            {"id": key_id, "tenant": tenant, "scope": scope, "hash": secret_hash(key_id, secret), "note": note},
        ).scalar_one()
    return NewKey(Principal(key_id, tenant, scope), f"{PREFIX}_{key_id}_{secret}", created_at)  # type: ignore[arg-type]


def revoke_key(engine: Engine, key_id: str) -> bool:
    """Revoke a key by id; False when no active key has that id."""
    with engine.begin() as connection:
        revoked = connection.execute(
            text("UPDATE api_keys SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL"), {"id": key_id}
        ).rowcount
    return bool(revoked)


def revoke_keys_with_note(engine: Engine, tenant: str, note: str) -> int:
    """Revoke every active key of `tenant` carrying `note` (make run replaces its development key)."""
    with engine.begin() as connection:
        return int(
            connection.execute(
                text(
                    "UPDATE api_keys SET revoked_at = now() "
                    "WHERE tenant = :tenant AND note = :note AND revoked_at IS NULL"
                ),
                {"tenant": tenant, "note": note},
            ).rowcount
        )


def list_keys(engine: Engine, tenant: str | None = None, include_revoked: bool = False) -> list[KeyInfo]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT id, tenant, scope, note, created_at, revoked_at FROM api_keys "
                "WHERE (CAST(:tenant AS text) IS NULL OR tenant = :tenant) AND (:all OR revoked_at IS NULL) "
                "ORDER BY tenant, created_at, id"
            ),
            {"tenant": tenant, "all": include_revoked},
        ).all()
    return [KeyInfo(r.id, r.tenant, r.scope, r.note, r.created_at, r.revoked_at) for r in rows]


def verify_key(engine: Engine, key: str) -> Principal | None:
    """The principal of an active key whose secret matches, else None (unknown, revoked, wrong or malformed)."""
    parsed = parse_key(key)
    if parsed is None:
        return None
    key_id, secret = parsed
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT tenant, scope, secret_sha256 FROM api_keys WHERE id = :id AND revoked_at IS NULL"),
            {"id": key_id},
        ).first()
    if row is None or not hmac.compare_digest(bytes(row.secret_sha256), secret_hash(key_id, secret)):
        return None
    return Principal(key_id, row.tenant, row.scope)
