"""What every route needs: settings and backends, held on the app and handed out as a dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import Depends, Request

from gateway.backends import Backends
from gateway.metrics import Metrics
from gateway.params import parse_zone
from meterdata.settings import Settings


@dataclass
class Gateway:
    settings: Settings
    metrics: Metrics
    backends: Backends

    def zone(self, tz: str | None) -> ZoneInfo:
        return parse_zone(tz, self.settings.default_time_zone)


def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
