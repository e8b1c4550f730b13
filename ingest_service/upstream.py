"""The upstream meter API client: static published files and the paged measurement API.

Timeouts on every request; retries with exponential backoff on connection errors, timeouts and 5xx
(tenacity); no retry on 4xx, a non-JSON body or a body that is not ``{"data": [...]}`` — those are
clear errors carrying the URL, the status and the start of the body.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from meterdata.logs import fields
from meterdata.settings import Settings

log = logging.getLogger(__name__)

SourceKind = Literal["static", "api"]
BODY_EXCERPT = 200


class UpstreamError(Exception):
    """The upstream could not give a usable answer; `body` keeps what it did send."""

    def __init__(self, url: str, message: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(f"{url}: {message}")
        self.url = url
        self.reason = message
        self.status = status
        self.body = body


class UpstreamUnavailable(UpstreamError):
    """Connection failure, timeout or 5xx: worth retrying."""


@dataclass(frozen=True)
class Page:
    url: str
    records: list[Any]


def _retryable(error: BaseException) -> bool:
    return isinstance(error, UpstreamUnavailable)


def excerpt(body: bytes) -> str:
    text = body[:BODY_EXCERPT].decode("utf-8", errors="replace")
    return text + ("..." if len(body) > BODY_EXCERPT else "")


def parse_payload(url: str, body: bytes) -> list[Any]:
    """The `data` list of an upstream answer, or UpstreamError saying what the body is instead."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UpstreamError(
            url, f"body is not valid JSON ({error}); it starts with {excerpt(body)!r}", body=body
        ) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        shape = type(payload).__name__ if not isinstance(payload, dict) else f"object with keys {sorted(payload)[:5]}"
        raise UpstreamError(url, f'body must be {{"data": [...]}}, got a JSON {shape}', body=body)
    return payload["data"]


class UpstreamClient:
    def __init__(self, settings: Settings, base_url: str, kind: SourceKind, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self.base_url = base_url.rstrip("/")
        self.kind = kind
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(settings.upstream_timeout_seconds, connect=settings.upstream_connect_timeout_seconds),
            follow_redirects=True,
            headers={"User-Agent": "meterdata-ingest/0.1", "Accept": "application/json"},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> UpstreamClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get_once(self, url: str, params: dict[str, str] | None) -> Page:
        try:
            response = self._client.get(url, params=params)
        except httpx.TimeoutException as error:
            limit = self.settings.upstream_timeout_seconds
            if isinstance(error, httpx.ConnectTimeout):
                limit = self.settings.upstream_connect_timeout_seconds
            raise UpstreamUnavailable(
                url, f"timed out: no answer within {limit:g} s ({type(error).__name__})"
            ) from None
        except httpx.TransportError as error:
            raise UpstreamUnavailable(url, f"cannot connect ({type(error).__name__}: {error})") from None
        full_url = str(response.request.url)
        if response.status_code >= 500:
            raise UpstreamUnavailable(
                full_url,
                f"HTTP {response.status_code}: {excerpt(response.content)!r}",
                response.status_code,
                response.content,
            )
        if response.status_code >= 400:
            raise UpstreamError(
                full_url,
                f"HTTP {response.status_code}: {excerpt(response.content)!r}",
                response.status_code,
                response.content,
            )
        return Page(full_url, parse_payload(full_url, response.content))

    def get(self, url: str, params: dict[str, str] | None = None) -> Page:
        """One GET with retries on UpstreamUnavailable; the last error is raised when they run out."""
        retrying = Retrying(
            stop=stop_after_attempt(self.settings.upstream_retries + 1),
            wait=wait_exponential(multiplier=self.settings.upstream_backoff_seconds, max=10),
            retry=retry_if_exception(_retryable),
            reraise=True,
            before_sleep=lambda state: log.warning(
                "upstream retry",
                extra=fields(url=url, attempt=state.attempt_number, error=str(state.outcome.exception())),
            ),
        )
        try:
            return retrying(self._get_once, url, params)
        except UpstreamUnavailable as error:
            attempts = self.settings.upstream_retries + 1
            raise UpstreamUnavailable(
                error.url, f"{error.reason}; gave up after {attempts} attempts", error.status, error.body
            ) from None

    def static_url(self, muid: str) -> str:
        return f"{self.base_url}/challenge/{muid}.json"

    def pages(self, muid: str, start: datetime, stop: datetime) -> Iterator[Page]:
        """All records of a meter in [start, stop): one page for a static file, paged by `limit` for the API."""
        if self.kind == "static":
            yield self.get(self.static_url(muid))
            return
        limit = self.settings.upstream_page_limit
        window_start, window_stop = start, stop
        while window_start < window_stop:
            page = self.get(
                f"{self.base_url}/meterdata/measurement",
                {
                    "muid": muid,
                    "measurement": "energy",
                    "limit": str(limit),
                    "start": window_start.isoformat().replace("+00:00", "Z"),
                    "stop": window_stop.isoformat().replace("+00:00", "Z"),
                },
            )
            yield page
            if len(page.records) < limit:
                return
            # A full page: narrow the window past what it held, whichever order the upstream sorts in.
            stamps = _timestamps(page.records)
            if not stamps:
                return
            previous = (window_start, window_stop)
            if stamps[0] > stamps[-1]:  # newest first: continue below the oldest
                window_stop = min(stamps)
            else:
                window_start = max(stamps) + timedelta(microseconds=1)
            if (window_start, window_stop) == previous:
                raise UpstreamError(page.url, "paging made no progress: the upstream ignores start/stop")


def _timestamps(records: list[Any]) -> list[datetime]:
    stamps = []
    for record in records:
        try:
            stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
        except (TypeError, KeyError, ValueError, AttributeError):
            continue
        if stamp.tzinfo is not None:
            stamps.append(stamp)
    return stamps


def reachable(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """Whether `url` answers at all (any HTTP status), and why not when it does not."""
    try:
        httpx.head(url, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as error:
        return False, f"{type(error).__name__}: {error}"
    return True, ""
