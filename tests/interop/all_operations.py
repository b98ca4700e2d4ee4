"""Every operation of the official Python SDK's SmsClient, each with minimal valid
arguments, through sms-audit --proxy over HTTPS in front of the stand-in SMS,
which checks each signature with the SDK's own signer. Each must be answered
200; each must have reached the stand-in re-signed with the upstream key (the
upload through forwarding, every other call passed on); and the proxy log must
list every call passed on.

Usage: all_operations.py ENDPOINT CA_CERT AK SK PROJECT_ID STANDIN_RECORD_FILE
       AUDITOR_TOKEN UPSTREAM_AK
"""
import inspect
import json
import ssl
import sys
import time
import urllib.request

import huaweicloudsdksms.v3 as sms
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig

from standin_answers import SOURCE, TASK

# A value for each path parameter the SDK's operations take.
PATH_VALUES = {"task_id": TASK, "source_id": SOURCE, "server_id": SOURCE,
               "mig_project_id": "mp-0001", "id": "tpl-0001", "version": "v3"}


def operations():
    """(name, method, path template) of each SmsClient operation."""
    for name, _ in inspect.getmembers(sms.SmsClient, inspect.isfunction):
        if name.startswith("_") or name.endswith(("_invoker", "_async")):
            continue
        info = getattr(sms.SmsClient, f"_{name}_http_info", None)
        if info is None:
            continue
        request = request_for(name)
        http = info(request)
        yield name, http["method"], http["resource_path"], request


def request_for(name):
    """The operation's request with its path parameters set, and a body only
    where sms-audit itself reads it (the upload)."""
    cls = getattr(sms, "".join(p.capitalize() for p in name.split("_")) + "Request")
    params = inspect.signature(cls.__init__).parameters
    args = {p: PATH_VALUES[p] for p in params if p in PATH_VALUES}
    if name == "update_consistency_result":
        args["body"] = sms.SetConsistencyResultRequestBody(consistency_result=[
            sms.ConsistencyResult(dir_check="/srv", num_total_files=3, num_different_files=0,
                                  num_target_miss_files=0, num_target_more_files=0)])
    return cls(**args)


def path_of(template):
    for name, value in PATH_VALUES.items():
        template = template.replace("{" + name + "}", value)
    return template


def proxy_log(endpoint, context, token):
    calls, before = [], None
    while True:
        url = f"{endpoint}/api/v1/proxy-log?limit=1000" + (f"&before_id={before}" if before else "")
        request = urllib.request.Request(url, headers={"X-Auth-Token": token})
        page = json.load(urllib.request.urlopen(request, context=context))
        calls += page["calls"]
        before = page["next_before_id"]
        if before is None:
            return calls


def main() -> int:
    endpoint, ca_cert, ak, sk, project_id, record_file, auditor_token, upstream_ak = sys.argv[1:9]
    config = HttpConfig.get_default_config()
    config.ignore_ssl_verification = False
    config.ssl_ca_cert = ca_cert
    client = (sms.SmsClient.new_builder().with_http_config(config)
              .with_credentials(BasicCredentials(ak, sk, project_id))
              .with_endpoint(endpoint).build())
    with open(record_file) as f:
        seen_before = sum(1 for _ in f)
    ops = list(operations())
    made = []
    for name, method, template, request in ops:
        response = getattr(client, name)(request)
        assert response.status_code == 200, f"{name}: {response.status_code}"
        made.append((name, method, path_of(template)))
    assert len(made) >= 49, f"only {len(made)} operations in the SDK"

    # What reached the stand-in since: every call, re-signed; the upload once
    # forwarded (asynchronously).
    upload = next((m, p) for n, m, p in made if n == "update_consistency_result")
    for _ in range(100):
        with open(record_file) as f:
            received = [json.loads(line) for line in f][seen_before:]
        if any((r["method"], r["path"]) == upload for r in received):
            break
        time.sleep(0.1)
    def authorization(r):
        return {k.lower(): v for k, v in r["headers"].items()}.get("authorization", "")
    reached = {(r["method"], r["path"]) for r in received
               if r["signature_ok"] and f"Access={upstream_ak}," in authorization(r)}
    missing = [(n, m, p) for n, m, p in made if (m, p) not in reached]
    assert not missing, f"not at the stand-in re-signed: {missing}"

    context = ssl.create_default_context(cafile=ca_cert)
    for _ in range(100):
        logged = [(c["method"], c["path"]) for c in proxy_log(endpoint, context, auditor_token)]
        unlogged = [(n, m, p) for n, m, p in made if (m, p) != upload and (m, p) not in logged]
        if not unlogged:
            break
        time.sleep(0.1)
    assert not unlogged, f"not in the proxy log: {unlogged}"
    print(f"every SmsClient operation ({len(made)}) reached the stand-in re-signed; "
          f"{len(made) - 1} passed on and in the proxy log, the upload stored and forwarded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
