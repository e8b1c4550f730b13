"""`python -m gateway serve`: run the REST gateway (FastAPI on uvicorn)."""

from __future__ import annotations

import argparse
import sys

from meterdata.logs import configure_logging
from meterdata.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway",
        description="The meterdata REST gateway: JSON/CSV API under /api/v1 over the gRPC services, OpenAPI at "
        "/docs, /healthz, /readyz, /metrics. Configured by environment variables (GATEWAY_HOST, GATEWAY_PORT, "
        "QUERY_ADDRESS, INGEST_ADDRESS, ANALYTICS_ADDRESS, GRPC_DEADLINE_SECONDS, CORS_ORIGINS, DEFAULT_TIME_ZONE).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve HTTP on GATEWAY_HOST:GATEWAY_PORT (default 127.0.0.1:8000) until Ctrl-C")
    parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)

    import uvicorn

    from gateway.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(1, int(settings.grpc_shutdown_grace_seconds)),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
