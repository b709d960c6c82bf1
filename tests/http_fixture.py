"""A loopback HTTP server for download tests: byte ranges, a cut connection, what was asked.

``serve_files`` serves a folder on 127.0.0.1 as a static file host does: ``Range: bytes=N-`` is
answered ``206 Partial Content`` with ``Content-Range`` (RFC 9110, section 14), or ``416`` past
the end, or ignored (a plain ``200``) when ranges are off. ``cut_after=K`` sends the headers of
the whole body, then only its first ``K`` bytes, and closes the connection: the next request is
served in full. Every request's ``Range`` header is recorded.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Host:
    """The server's settings and what it saw."""

    url: str = ""
    ranges: bool = True
    cut_after: int | None = None
    seen: list[str | None] = field(default_factory=list)  # each request's Range header


def _handler(folder: Path, host: Host) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = folder / self.path.lstrip("/").split("?")[0]
            asked = self.headers.get("Range")
            host.seen.append(asked)
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            start = int(asked.removeprefix("bytes=").split("-")[0]) if asked else 0
            if asked and host.ranges and start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            partial = bool(asked) and host.ranges
            body = data[start:] if partial else data
            self.send_response(206 if partial else 200)
            if partial:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if host.cut_after is not None:
                body, host.cut_after = body[: host.cut_after], None
                self.close_connection = True
            self.wfile.write(body)

    return Handler


@contextlib.contextmanager
def serve_files(folder: Path, **settings: object) -> Iterator[Host]:
    """Serves ``folder`` on a free port of 127.0.0.1; yields the :class:`Host` (its ``url``)."""
    host = Host(**settings)  # type: ignore[arg-type]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(folder, host))
    host.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    # A short poll interval: shutdown() waits for one.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield host
    finally:
        httpd.shutdown()
        httpd.server_close()
