"""A minimal Confluent schema registry for the tests: the two calls the pipeline and the
generator make (register a subject version, fetch a schema by id), over real HTTP."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson


class SchemaRegistry:
    def __init__(self) -> None:
        self.schemas: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self.path.startswith("/subjects/"):
                    return self._send(404, {"error_code": 404, "message": "not found"})
                schema = body["schema"]
                if schema not in registry.schemas:
                    registry.schemas.append(schema)
                self._send(200, {"id": registry.schemas.index(schema) + 1})

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path.startswith("/schemas/ids/"):
                    number = int(path.rsplit("/", 1)[1])
                    if 1 <= number <= len(registry.schemas):
                        return self._send(200, {"schema": registry.schemas[number - 1]})
                    return self._send(404, {"error_code": 40403, "message": "Schema not found"})
                self._send(404, {"error_code": 404, "message": "not found"})

            def _send(self, status: int, body: object) -> None:
                data = orjson.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> SchemaRegistry:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
