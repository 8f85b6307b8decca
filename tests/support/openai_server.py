"""A small OpenAI-compatible chat server for tests (a real HTTP server on a free port), behaving like
llama.cpp's: it refuses ``response_format: json_schema`` with HTTP 500, takes ``json_object`` with
a schema, needs no key, and records every request it was sent."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OpenAIServer:
    def __init__(self, answer: dict, *, refuse_json_schema: bool = True):
        self.answer = answer
        self.refuse_json_schema = refuse_json_schema
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                asked = (body.get("response_format") or {}).get("type")
                if asked == "json_schema" and server.refuse_json_schema:
                    self._send(500, {"error": {"code": 500, "message": "Internal Server Error",
                                               "type": "server_error"}})
                    return
                prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
                self._send(200, {
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": json.dumps(server.answer)}}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 12,
                              "total_tokens": prompt_tokens + 12}})

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> OpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
