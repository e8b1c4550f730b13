"""What every route needs: settings and backends, held on the app and handed out as a dependency.

`GatewayDep` (the API routes) hands out the backends bound to the tenant of the request's API key,
which `gateway.auth.ApiKeyMiddleware` verified; `AppDep` (health, readiness, metrics) the unbound ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import Depends, Request

from gateway.auth import MISSING_KEY, KeyVerifier, RateLimiter
from gateway.backends import Backends, TenantBackends
from gateway.metrics import Metrics
from gateway.params import parse_zone
from gateway.problems import ProblemError
from meterdata.settings import Settings


@dataclass
class Gateway:
    settings: Settings
    metrics: Metrics
    backends: Backends | TenantBackends
    keys: KeyVerifier
    limiter: RateLimiter

    def zone(self, tz: str | None) -> ZoneInfo:
        return parse_zone(tz, self.settings.default_time_zone)


def get_app_gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


def get_gateway(request: Request) -> Gateway:
    """The gateway as the caller's tenant sees it; no principal (a route outside `/api`) is refused."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise ProblemError(401, MISSING_KEY)
    gateway = get_app_gateway(request)
    assert isinstance(gateway.backends, Backends)
    return replace(gateway, backends=TenantBackends(gateway.backends, principal.tenant))


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
AppDep = Annotated[Gateway, Depends(get_app_gateway)]
