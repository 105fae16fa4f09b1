"""A bounded HTTP file server on 127.0.0.1 for the benchmarks (the files of one folder, GET with Range).

``with serve(folder, lifetime=900) as url:`` serves ``folder`` at ``url`` (``http://127.0.0.1:PORT/``)
until the block ends, or ``lifetime`` seconds have passed, whichever comes first: a benchmark that
is killed leaves no server behind (the thread is a daemon), and one left running stops by itself.
Like ``tests/helpers.py``'s ``FileServer``, but streaming files from disk (archives of gigabytes).
"""

from __future__ import annotations

import contextlib
import http.server
import shutil
import threading
from pathlib import Path
from typing import Iterator


def _handler(root: Path, requests: list):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            name, rng = self.path.lstrip("/"), self.headers.get("Range")
            requests.append((name, rng))
            path = root / name
            if "/" in name or not name or not path.is_file():
                self.send_error(404)
                return
            size = path.stat().st_size
            start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.send_header("Content-Length", str(size - start))
            self.end_headers()
            with open(path, "rb") as fh:
                fh.seek(start)
                try:
                    shutil.copyfileobj(fh, self.wfile, 1 << 20)
                except (BrokenPipeError, ConnectionResetError):  # the client went away
                    pass

        def log_message(self, *args):
            pass

    return Handler


@contextlib.contextmanager
def serve(folder: str | Path, lifetime: float = 3600.0, requests: list | None = None) -> Iterator[str]:
    """Serve the files directly in ``folder``; yields the base URL. ``requests`` collects
    (name, Range header) pairs."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(Path(folder), requests if requests is not None else []))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    timer = threading.Timer(lifetime, httpd.shutdown)
    timer.daemon = True
    timer.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        timer.cancel()
        httpd.shutdown()
        httpd.server_close()
