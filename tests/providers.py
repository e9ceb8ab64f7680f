"""Local fakes of third-party verifiers, over real HTTP on 127.0.0.1: a CAPTCHA siteverify
endpoint (Turnstile, hCaptcha and reCAPTCHA speak the same protocol) and Akismet's
comment-check."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


class FakeProvider:
    """Answers each POST with `answer(form)`: the JSON document (dict) or text (str) to
    send back; `delay` seconds first. Every request's form is kept in `requests`."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.delay = 0.0
        self.status = 200
        self.answers: dict[str, Any] = {}  # by the `response` (token) field
        self.default: Any = {"success": False, "error-codes": ["invalid-input-response"]}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                fake.requests.append(form)
                if fake.delay:
                    time.sleep(fake.delay)
                answer = fake.answers.get(form.get("response", ""), fake.default)
                body = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                try:
                    self.send_response(fake.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (a timeout test)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/siteverify"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
