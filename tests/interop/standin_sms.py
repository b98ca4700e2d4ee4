"""A stand-in SMS for the agent run: checks every request's signature with the
official SDK's own signer against the upstream credentials, answers from
standin_answers.py (401 for a bad signature, `{}` for any other call, 404 for
the results of a task it does not know), and
records each request as a JSON line.

Usage: standin_sms.py PORT_FILE RECORD_FILE AK SK
"""
import base64
import json
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from standin_answers import RESULTS, answer_for, results_answer

PORT_FILE, RECORD_FILE, AK, SK = sys.argv[1:5]


def signature_ok(method, path, query, headers, body):
    lower = {k.lower(): v for k, v in headers.items()}
    authorization = lower.get("authorization", "")
    if f"Access={AK}," not in authorization:
        return False
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    if "host" not in signed or "x-sdk-date" not in signed:
        return False
    header_params = {name: lower[name] for name in signed if name in lower}
    request = SdkRequest(
        method=method,
        schema="http",
        host=lower["host"],
        resource_path=path,
        query_params=parse_qsl(query, keep_blank_values=True),
        header_params=header_params,
        body=body,
    )
    Signer(BasicCredentials(AK, SK)).sign(request)
    return request.header_params["Authorization"] == authorization


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_any(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        parts = urlsplit(self.path)
        ok = signature_ok(self.command, parts.path, parts.query, self.headers, body)
        answer = results_answer(self.command, parts.path, body) if ok else None
        if answer is None:
            answer = answer_for(self.command, parts.path)
        # Any other operation (all_operations.py drives every one) gets an empty
        # object, as most of SMS's answers are; a task's results stay 404 when
        # the task is unknown, as in SMS.
        if answer is None and not RESULTS.fullmatch(parts.path):
            answer = {}
        if not ok:
            status, payload = 401, {"error_code": "APIGW.0301", "error_msg": "bad signature"}
        elif answer is None:
            status, payload = 404, {"error_code": "APIGW.0101", "error_msg": "no such API"}
        else:
            status, payload = 200, answer
        request_id = str(uuid.uuid4())
        with open(RECORD_FILE, "a") as f:
            f.write(json.dumps({
                "method": self.command, "path": parts.path, "query": parts.query,
                "headers": dict(self.headers.items()), "body_b64": base64.b64encode(body).decode(),
                "signature_ok": ok, "status": status, "request_id": request_id,
            }) + "\n")
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("X-Request-Id", request_id)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = handle_any

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE, "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
