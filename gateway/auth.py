"""API keys at the gateway: every `/api/*` request presents one, its scope must allow the request, its
tenant goes to the services with every backend call, and a token bucket per key limits its rate.

Where keys are checked. The gateway holds no database connection, on purpose: it is the one process
that faces the internet, and giving it DATABASE_URL would hand the whole database to whoever breaks
into it. Keys live hashed in PostgreSQL (`api_keys`, see `meterdata.apikeys`); the gateway asks the
query service, which already owns the read SQL and a connection pool, with one small RPC
(`ApiKeyService.VerifyApiKey`) over the channel it already has. Answers are cached by the SHA-256 of
the presented key for API_KEY_CACHE_SECONDS, so a busy key costs one RPC per period and a revoked key
stops working at most that long after `python -m gateway keys revoke`. The NetworkPolicies stay as
they were: the gateway reaches the query service, never PostgreSQL.

The check is an ASGI middleware, not a per-route dependency, so no route under `/api` can be added
without it; the OpenAPI document declares the scheme on every such operation (`app.py`). Keys are
read from `Authorization: Bearer <key>` or `X-API-Key: <key>` and never logged or echoed.

Scopes: `read` allows every GET (and HEAD); `ingest` allows `/api/v1/ingest/*` (starting pulls and
following runs); `admin` allows everything, including `/metrics` when METRICS_REQUIRE_KEY is on.

Unknown keys cost a lookup each, so they are limited too: a client address whose keys the query
service refused more than AUTH_FAILURES_PER_MINUTE times gets 429 for any key the cache does not
already know, until its budget refills. Keys already verified (cached) still pass from that address.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.backends import BackendError, Backends
from gateway.problems import problem_response, rpc_problem
from meterdata.apikeys import Principal, parse_key
from meterdata.settings import Settings
from meterdata.v1 import auth_pb2

SCOPE_NAMES = {
    auth_pb2.API_KEY_SCOPE_READ: "read",
    auth_pb2.API_KEY_SCOPE_INGEST: "ingest",
    auth_pb2.API_KEY_SCOPE_ADMIN: "admin",
}
REALM = 'Bearer realm="meterdata"'
MISSING_KEY = (
    "an API key is required: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>' "
    "(an operator creates one with 'python -m gateway keys create')"
)
INVALID_KEY = "the API key is not valid (unknown, revoked or malformed)"
CACHE_ENTRIES = 10_000
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def presented_key(headers: Headers) -> str | None:
    """The key of the request: `Authorization: Bearer <key>`, else `X-API-Key`; None when neither is sent."""
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


def allowed_scopes(method: str, path: str) -> frozenset[str]:
    """The scopes that may make this request."""
    reading = method in ("GET", "HEAD")
    if path == "/metrics":
        return frozenset({"admin"})
    if path == "/api/v1/ingest" or path.startswith("/api/v1/ingest/"):
        return frozenset({"read", "ingest", "admin"} if reading else {"ingest", "admin"})
    return frozenset({"read", "admin"} if reading else {"admin"})


def is_protected(path: str, settings: Settings) -> bool:
    return path == "/api" or path.startswith("/api/") or (path == "/metrics" and settings.metrics_require_key)


class TooManyRefusedKeys(Exception):
    """The client's address spent its budget of refused keys; `wait` seconds until it may try another."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"too many refused API keys; retry in {wait:.0f} s")
        self.wait = wait


class KeyVerifier:
    """Verified keys (and refused ones), cached by the SHA-256 of the key for `ttl` seconds; lookups
    that find no key are counted per client address in `refusals`."""

    def __init__(
        self, backends: Backends, ttl: float, refusals: RateLimiter, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.backends = backends
        self.ttl = ttl
        self.refusals = refusals
        self.clock = clock
        self._cache: OrderedDict[bytes, tuple[Principal | None, float]] = OrderedDict()

    async def verify(self, key: str, client: str) -> Principal | None:
        """The key's principal, None for a key that is not valid; BackendError when it cannot be checked,
        TooManyRefusedKeys when `client` may not have an unknown key looked up now."""
        if parse_key(key) is None:
            return None  # not even the shape of a key: no need to ask
        digest = hashlib.sha256(key.encode()).digest()
        now = self.clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        wait = self.refusals.waiting(client)
        if wait > 0:
            raise TooManyRefusedKeys(wait)
        answer = await self.backends.verify_key(key)
        if answer is None:
            self.refusals.take(client)
        principal = None if answer is None else Principal(answer.key_id, answer.tenant, SCOPE_NAMES[answer.scope])  # type: ignore[arg-type]
        if self.ttl > 0:
            self._cache[digest] = (principal, now + self.ttl)
            self._cache.move_to_end(digest)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return principal


class RateLimiter:
    """A token bucket per key: `burst` requests at once, refilled at `rate` per second (0: no limit)."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, when)

    def take(self, key_id: str) -> float:
        """0 when the request may go ahead (a token is taken), else the seconds until a token is there."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens = self._tokens(key_id, now)
        if tokens >= 1:
            self._buckets[key_id] = (tokens - 1, now)
            return 0.0
        self._buckets[key_id] = (tokens, now)
        return (1 - tokens) / self.rate

    def waiting(self, key_id: str) -> float:
        """The seconds until `key_id` has a token, without taking one (0: it has one now)."""
        if self.rate <= 0:
            return 0.0
        return max(0.0, (1 - self._tokens(key_id, self.clock())) / self.rate)

    def _tokens(self, key_id: str, now: float) -> float:
        tokens, when = self._buckets.get(key_id, (self.burst, now))
        return min(self.burst, tokens + (now - when) * self.rate)


class ApiKeyMiddleware:
    """401 without a valid key, 403 for a scope that does not allow the request, 429 over the key's rate;
    otherwise the request goes on with `request.state.principal` set. CORS preflights pass (they carry
    no credentials; the CORS middleware outside this one answers them)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or not is_protected(scope["path"], self.settings):
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        gateway = scope["app"].state.gateway
        key = presented_key(Headers(scope=scope))
        if key is None:
            await problem_response(401, MISSING_KEY, path, headers={"WWW-Authenticate": REALM})(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        try:
            principal = await gateway.keys.verify(key, client)
        except BackendError as error:  # the key could not be checked: fail closed, as a backend problem
            await rpc_problem(error.error, error.backend, path, None)(scope, receive, send)
            return
        except TooManyRefusedKeys as refused:
            detail = (
                f"too many refused API keys from this address ({self.settings.auth_failures_per_minute} per "
                "minute); retry after the time in Retry-After"
            )
            headers = {"Retry-After": str(max(1, math.ceil(refused.wait)))}
            await problem_response(429, detail, path, headers=headers)(scope, receive, send)
            return
        if principal is None:
            headers = {"WWW-Authenticate": f'{REALM}, error="invalid_token"'}
            await problem_response(401, INVALID_KEY, path, headers=headers)(scope, receive, send)
            return
        allowed = allowed_scopes(method, path)
        if principal.scope not in allowed:
            needed = " or ".join(sorted(allowed))
            detail = f"the API key's scope '{principal.scope}' does not allow {method} {path}; it needs {needed}"
            headers = {"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{" ".join(sorted(allowed))}"'}
            await problem_response(403, detail, path, headers=headers)(scope, receive, send)
            return
        wait = gateway.limiter.take(principal.key_id)
        if wait > 0:
            detail = (
                f"rate limit of this API key exceeded ({self.settings.rate_limit_per_second:g} requests per second, "
                f"bursts of {self.settings.rate_limit_burst}); retry after the time in Retry-After"
            )
            headers = {"Retry-After": str(max(1, math.ceil(wait)))}
            await problem_response(429, detail, path, headers=headers)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 for a request body larger than MAX_REQUEST_BODY_BYTES, by its Content-Length or as it arrives.

    The bodies of this API are small JSON documents, so a body is read whole (up to the limit) before
    the route sees it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the request body is larger than {self.limit} bytes (MAX_REQUEST_BODY_BYTES)"
        await problem_response(413, detail, scope["path"], headers={"Connection": "close"})(scope, receive, send)
