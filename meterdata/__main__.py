"""`python -m meterdata run|migrate|database-url`: the local runner and database chores."""

from __future__ import annotations

import argparse
import sys

from meterdata.logs import configure_logging
from meterdata.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m meterdata",
        description="Run the whole meterdata topology locally, or manage its database.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "run",
        help="start the database (embedded unless DATABASE_URL is set), migrate, start all services, "
        "ingest the published meters and wait for Ctrl-C",
    )
    commands.add_parser("migrate", help="apply the database migrations (embedded database unless DATABASE_URL)")
    commands.add_parser(
        "database-url", help="print the database URL (starting the embedded server if DATABASE_URL is unset)"
    )
    health = commands.add_parser(
        "healthcheck",
        help="exit 0 when a service answers healthy (for Docker HEALTHCHECK): a gRPC address or an http(s) URL",
    )
    health.add_argument("target", help="host:port of a gRPC service, or the URL of the gateway's /healthz")
    health.add_argument("--service", default="", help="gRPC service name to check (default: the whole server)")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds to wait (default 3)")
    args = parser.parse_args(argv)
    if args.command == "healthcheck":
        from meterdata.runner import grpc_healthy, http_healthy

        if args.target.startswith(("http://", "https://")):
            return 0 if http_healthy(args.target, args.timeout) else 1
        return 0 if grpc_healthy(args.target, args.service, args.timeout) else 1
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)

    from meterdata import runner

    if args.command == "run":
        return runner.run(settings)
    if args.command == "migrate":
        runner.prepare_database(settings)
        return 0
    url, _ = runner.resolve_database_url(settings)
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
