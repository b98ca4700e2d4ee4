"""Recomputes the signature of a request sms-audit forwarded, with the official
SDK's signer (huaweicloudsdkcore), and checks it matches what was sent.

Usage: verify_forwarded.py CAPTURE_FILE AK SK EXPECTED_BODY_FILE
"""
import base64
import json
import sys

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer


def main() -> int:
    capture_file, ak, sk, expected_body_file = sys.argv[1:5]
    with open(capture_file) as f:
        captured = json.loads(f.readline())
    headers = captured["headers"]
    lower = {k.lower(): v for k, v in headers.items()}
    authorization = lower["authorization"]
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert "host" in signed and "x-sdk-date" in signed, signed
    body = base64.b64decode(captured["body_b64"])
    with open(expected_body_file, "rb") as f:
        expected = f.read()
    assert body == expected, "the forwarded body differs from the stored raw body"
    for secret_header in ("x-auth-token",):
        assert secret_header not in lower, "the agent's credentials were forwarded"

    request = SdkRequest(
        method=captured["method"],
        schema="http",
        host=lower["host"],
        resource_path=captured["path"],
        query_params=[],
        header_params={name: lower[name] for name in signed},
        body=body,
    )
    Signer(BasicCredentials(ak, sk)).sign(request)
    recomputed = request.header_params["Authorization"]
    if recomputed != authorization:
        print(f"signature mismatch:\n  sent:       {authorization}\n  SDK signer: {recomputed}")
        return 1
    print(f"forwarded request verified by the SDK's signer: {recomputed[:60]}...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
