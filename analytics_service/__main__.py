"""`python -m analytics_service serve|report`: run the gRPC service, or regenerate the EDA report."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from meterdata import PROJECT_ROOT
from meterdata.logs import configure_logging
from meterdata.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analytics_service",
        description="Analytics over meter channels (profiles, autocorrelation, summaries, explanations, balance, "
        "plots); reads every series from the query service over gRPC.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve",
        help="run the AnalyticsService gRPC server on GRPC_LISTEN_HOST:ANALYTICS_PORT (default 127.0.0.1:50053), "
        "reading from QUERY_ADDRESS; stops cleanly on SIGTERM/Ctrl-C",
    )
    report = commands.add_parser(
        "report",
        help="write the data-exploration report (README.md and PNG figures) from the database, through the services",
        description="Without --use-running: prepare the database (embedded unless DATABASE_URL), start the ingest, "
        "query and analytics services on free ports, ingest the configured meters, render the report and stop them. "
        "With --use-running: ask the services already running at QUERY_ADDRESS and ANALYTICS_ADDRESS.",
    )
    report.add_argument(
        "--out", type=Path, default=PROJECT_ROOT / "docs" / "eda", help="output folder (default: docs/eda)"
    )
    report.add_argument(
        "--use-running",
        action="store_true",
        help="use the services at QUERY_ADDRESS / ANALYTICS_ADDRESS instead of starting them (no ingest)",
    )
    report.add_argument("--time-zone", default=None, help="IANA time zone for local time (default: DEFAULT_TIME_ZONE)")
    args = parser.parse_args(argv)

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "serve":
        from analytics_service import server

        asyncio.run(server.main(settings))
        return 0
    from analytics_service import report as report_module

    return report_module.run(settings, args.out, use_running=args.use_running, time_zone=args.time_zone)


if __name__ == "__main__":
    sys.exit(main())
