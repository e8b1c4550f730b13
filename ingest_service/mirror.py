"""A local mirror of the upstream meter API, serving the bundled snapshot over real HTTP on loopback.

It answers both shapes the ingest client speaks:
- ``GET /challenge/{muid}.json``: the published static file, byte-exact;
- ``GET /meterdata/measurement?muid=&measurement=energy&limit=&start=&stop=``: the API, newest first,
  ``start`` inclusive, ``stop`` exclusive, at most ``limit`` records.
The snapshot's sha256 is checked against ``SHA256SUMS`` when it is loaded. Faults can be queued
(`inject`) so that tests and demos see the same server misbehave the way a real upstream does.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

SNAPSHOT_DIR = Path(__file__).resolve().parent / "snapshot"


class SnapshotCorrupt(RuntimeError):
    """A bundled file's sha256 differs from SHA256SUMS."""


def load_snapshot(directory: Path = SNAPSHOT_DIR) -> dict[str, bytes]:
    """{muid: raw JSON bytes} of the bundled files, each verified against SHA256SUMS."""
    files: dict[str, bytes] = {}
    for line in (directory / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        data = gzip.decompress((directory / f"{name}.gz").read_bytes())
        if hashlib.sha256(data).hexdigest() != digest:
            raise SnapshotCorrupt(f"{name}: sha256 mismatch with SHA256SUMS")
        files[name.removesuffix(".json")] = data
    return files


def parse_instant(value: str) -> datetime:
    """A date (midnight UTC) or an ISO time; naive times are UTC, as the upstream reads them."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class Fault:
    status: int
    body: bytes
    content_type: str
    delay_seconds: float = 0.0


class Mirror:
    """The mirror server; use as a context manager or call start()/stop()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, files: dict[str, bytes] | None = None) -> None:
        self.files = dict(files if files is not None else load_snapshot())
        self._records = {muid: json.loads(data)["data"] for muid, data in self.files.items()}
        self._faults: dict[str, deque[Fault]] = {}
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def set_file(self, muid: str, data: bytes) -> None:
        """Replace what the mirror serves for a meter (e.g. an upstream correction)."""
        with self._lock:
            self.files[muid] = data
            self._records[muid] = json.loads(data)["data"]

    def inject(self, path: str, status: int, body: bytes = b"", content_type: str = "text/plain", times: int = 1,
               delay_seconds: float = 0.0) -> None:  # fmt: skip
        """The next `times` requests whose path starts with `path` get this answer instead."""
        with self._lock:
            queue = self._faults.setdefault(path, deque())
            queue.extend(Fault(status, body, content_type, delay_seconds) for _ in range(times))

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for prefix, queue in self._faults.items():
                if path.startswith(prefix) and queue:
                    return queue.popleft()
        return None

    def answer(self, raw_path: str) -> tuple[int, bytes, str]:
        parsed = urlparse(raw_path)
        if parsed.path.startswith("/challenge/") and parsed.path.endswith(".json"):
            muid = parsed.path[len("/challenge/") : -len(".json")]
            if muid in self.files:
                return 200, self.files[muid], "application/json"
            return 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml"
        if parsed.path == "/meterdata/measurement":
            return self._measurement(parse_qs(parsed.query))
        return 404, b'{"error":"not found"}', "application/json"

    def _measurement(self, query: dict[str, list[str]]) -> tuple[int, bytes, str]:
        def error(message: str) -> tuple[int, bytes, str]:
            return 400, json.dumps({"error": message}).encode(), "application/json"

        muid = query.get("muid", [""])[0]
        if muid not in self._records:
            return 404, json.dumps({"error": f"unknown muid {muid!r}"}).encode(), "application/json"
        if query.get("measurement", ["energy"])[0] != "energy":
            return error("measurement must be 'energy'")
        try:
            limit = int(query.get("limit", ["5000"])[0])
            start = parse_instant(query["start"][0]) if "start" in query else None
            stop = parse_instant(query["stop"][0]) if "stop" in query else None
        except (ValueError, KeyError) as exc:
            return error(f"bad parameter: {exc}")
        if limit < 1:
            return error("limit must be >= 1")
        selected = [
            record
            for record in self._records[muid]
            if (start is None or parse_instant(record["timestamp"]) >= start)
            and (stop is None or parse_instant(record["timestamp"]) < stop)
        ]
        return 200, json.dumps({"data": selected[:limit]}, separators=(",", ":")).encode(), "application/json"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.requests.append(self.path)
                fault = mirror._take_fault(self.path)
                if fault is not None:
                    if fault.delay_seconds:
                        threading.Event().wait(fault.delay_seconds)
                    status, body, content_type = fault.status, fault.body, fault.content_type
                else:
                    status, body, content_type = mirror.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def start(self) -> Mirror:
        self._thread = threading.Thread(target=self._server.serve_forever, name="upstream-mirror", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Mirror:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
