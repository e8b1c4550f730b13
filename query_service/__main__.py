"""`python -m query_service serve`: run the QueryService gRPC server."""

from __future__ import annotations

import argparse
import asyncio
import sys

from meterdata.logs import configure_logging
from meterdata.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m query_service",
        description="The meterdata QueryService: meters, raw readings (keyset pages) and local-time series "
        "over gRPC, read from PostgreSQL. Configured by environment variables (DATABASE_URL, QUERY_PORT, "
        "GRPC_LISTEN_HOST, DEFAULT_TIME_ZONE, MAX_PAGE_SIZE, MAX_SERIES_BUCKETS, ...).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve", help="serve gRPC on GRPC_LISTEN_HOST:QUERY_PORT (default 127.0.0.1:50052) until SIGTERM/Ctrl-C"
    )
    parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    from query_service import server

    asyncio.run(server.main(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
