"""Tenants: whom a gRPC call acts for, carried as call metadata and enforced by every service in SQL.

Every meter belongs to one tenant (`meters.tenant`; the published meters to `default`). The gateway
sets the `x-meterdata-tenant` metadata of each backend call from the caller's API key; internal
clients set it themselves (`meterdata.grpc_client.sync_channel(address, tenant=...)`). A service reads
it with `caller_tenant` and scopes every statement by it, so a meter of another tenant is simply not
found.

The rule for a call without the metadata: it is refused with UNAUTHENTICATED. An internal client that
forgets the tenant therefore fails at once, instead of silently reading the default tenant's data.
`GRPC_DEFAULT_TENANT` can name a tenant to assume instead (for a single-tenant installation with
hand-written internal clients); it is empty by default.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from meterdata.errors import Unauthenticated

TENANT_METADATA_KEY = "x-meterdata-tenant"
DEFAULT_TENANT = "default"
TENANT_RULE = "1 to 63 characters: lower-case letters, digits, '_' and '-', starting with a letter or digit"
_TENANT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")

MISSING_TENANT = (
    f"the call names no tenant: send the '{TENANT_METADATA_KEY}' metadata "
    "(the gateway sets it from the API key; internal clients set it themselves)"
)


def is_tenant(name: str) -> bool:
    return bool(_TENANT.fullmatch(name))


def check_tenant(name: str) -> str:
    """`name` when it is a valid tenant name, else ValueError (the value is not echoed: it may be anything)."""
    if not is_tenant(name):
        raise ValueError(f"not a tenant name ({TENANT_RULE})")
    return name


def tenant_metadata(tenant: str) -> tuple[tuple[str, str], ...]:
    """The call metadata that names `tenant`."""
    return ((TENANT_METADATA_KEY, check_tenant(tenant)),)


def tenant_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None, default: str = "") -> str:
    """The tenant a call acts for; UNAUTHENTICATED when it names none (and no default is allowed) or a bad one."""
    values = [value for key, value in (metadata or ()) if key == TENANT_METADATA_KEY]
    if not values:
        if default:
            return default
        raise Unauthenticated(MISSING_TENANT)
    if len(values) > 1:
        raise Unauthenticated(f"the call names {len(values)} tenants; send '{TENANT_METADATA_KEY}' once")
    value = values[0]
    if not isinstance(value, str) or not is_tenant(value):
        raise Unauthenticated(f"'{TENANT_METADATA_KEY}' is not a tenant name ({TENANT_RULE})")
    return value


def caller_tenant(context: object, default: str = "") -> str:
    """The tenant of the call behind a servicer's `context` (see `tenant_from_metadata`)."""
    return tenant_from_metadata(context.invocation_metadata(), default)  # type: ignore[attr-defined]
