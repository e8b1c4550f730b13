"""`python -m gateway serve|keys`: run the REST gateway (FastAPI on uvicorn), or manage its API keys."""

from __future__ import annotations

import argparse
import sys

from meterdata.logs import configure_logging
from meterdata.settings import Settings, get_settings

KEYS_HELP = """\
API keys of the REST API. Every /api/v1 request must present one (Authorization: Bearer <key> or
X-API-Key: <key>). A key belongs to one tenant and sees only that tenant's meters; its scope is
  read    every GET under /api/v1
  ingest  the /api/v1/ingest routes: start pulls (POST) and follow runs
  admin   everything (and /metrics when METRICS_REQUIRE_KEY is on)
The key is printed once, by `create`; only a hash of its secret is stored. Revoked keys stop working
within API_KEY_CACHE_SECONDS (default 30). The commands write to the database in DATABASE_URL (the
embedded one of `make run` when it is unset), so run them where the database is reachable, e.g.
`kubectl exec deploy/query -- python -m gateway keys list` or `docker compose run --rm migrate python -m gateway keys list`.
"""


def _engine(settings: Settings):  # type: ignore[no-untyped-def]
    from meterdata.db import make_engine, require_current_schema
    from meterdata.runner import resolve_database_url

    url, _ = resolve_database_url(settings)
    engine = make_engine(url)
    require_current_schema(engine)
    return engine


def keys_command(args: argparse.Namespace, settings: Settings) -> int:
    from meterdata import apikeys

    engine = _engine(settings)
    if args.keys_command == "create":
        try:
            new = apikeys.create_key(engine, args.tenant, args.scope, args.note)
        except ValueError as error:
            print(f"keys create: {error}", file=sys.stderr)
            return 2
        principal = new.principal
        print(f"key id {principal.key_id}, tenant {principal.tenant}, scope {principal.scope}")
        print("the key (shown only now; store it in a secret manager):")
        print(new.key)
        return 0
    if args.keys_command == "revoke":
        if apikeys.revoke_key(engine, args.key_id):
            print(f"revoked key {args.key_id}; gateways refuse it within API_KEY_CACHE_SECONDS")
            return 0
        print(f"keys revoke: no active key with id {args.key_id!r}", file=sys.stderr)
        return 1
    rows = apikeys.list_keys(engine, args.tenant, args.all)
    print(f"{'id':<12}  {'tenant':<16}  {'scope':<6}  {'created (UTC)':<19}  {'revoked (UTC)':<19}  note")
    for key in rows:
        revoked = key.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if key.revoked_at else "-"
        created = key.created_at.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{key.key_id:<12}  {key.tenant:<16}  {key.scope:<6}  {created:<19}  {revoked:<19}  {key.note}")
    return 0


def serve(settings: Settings) -> int:
    import uvicorn

    from gateway.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(1, int(settings.grpc_shutdown_grace_seconds)),
        timeout_keep_alive=settings.gateway_keep_alive_seconds,
        ssl_certfile=settings.gateway_tls_cert_file or None,
        ssl_keyfile=settings.gateway_tls_key_file or None,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway",
        description="The meterdata REST gateway: JSON/CSV API under /api/v1 over the gRPC services, OpenAPI at "
        "/docs, /healthz, /readyz, /metrics. Configured by environment variables (GATEWAY_HOST, GATEWAY_PORT, "
        "QUERY_ADDRESS, INGEST_ADDRESS, ANALYTICS_ADDRESS, GRPC_DEADLINE_SECONDS, CORS_ORIGINS, DEFAULT_TIME_ZONE, "
        "RATE_LIMIT_PER_SECOND, GATEWAY_TLS_CERT_FILE, ...; see docs/DEPLOY.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve",
        help="serve HTTP (HTTPS with GATEWAY_TLS_CERT_FILE) on GATEWAY_HOST:GATEWAY_PORT (default 127.0.0.1:8000) "
        "until Ctrl-C",
    )
    keys = commands.add_parser(
        "keys",
        help="create, revoke and list API keys",
        description=KEYS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_commands.add_parser(
        "create", help="create a key and print it once", description="Create an API key and print it (only now)."
    )
    create.add_argument("--tenant", required=True, help="tenant the key acts for, e.g. default (a-z, 0-9, _ and -)")
    create.add_argument("--scope", required=True, choices=("read", "ingest", "admin"), help="what the key may do")
    create.add_argument("--note", default="", help="a free-text note shown by `keys list` (who holds the key)")
    revoke = keys_commands.add_parser("revoke", help="revoke a key by its id", description="Revoke an API key.")
    revoke.add_argument("key_id", metavar="ID", help="the key's id: the 12 hex digits after 'mdk_' (see `keys list`)")
    listing = keys_commands.add_parser(
        "list", help="list keys (ids, tenants, scopes; never secrets)", description="List API keys."
    )
    listing.add_argument("--tenant", default=None, help="only this tenant's keys")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "keys":
        return keys_command(args, settings)
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
