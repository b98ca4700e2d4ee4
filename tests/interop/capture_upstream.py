"""A stand-in SMS endpoint for the interop run: records each request it receives
(method, path, headers, body) as JSON lines and answers 200; it answers a read
of a task's results with none.

Usage: capture_upstream.py PORT_FILE CAPTURE_FILE
"""
import base64
import json
import sys
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        record = {
            "method": "POST",
            "path": self.path,
            "headers": {k: v for k, v in self.headers.items()},
            "body_b64": base64.b64encode(body).decode(),
        }
        with open(sys.argv[2], "a") as f:
            f.write(json.dumps(record) + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Request-Id", str(uuid.uuid4()))
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_GET(self):
        # A task's results read back (reconcile): this endpoint holds none.
        task = self.path.split("/")[3] if self.path.count("/") >= 4 else ""
        data = json.dumps({"task_id": task, "result_list": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
