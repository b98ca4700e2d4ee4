"""A migration agent's run through the official Python SDK (huaweicloudsdksms),
over HTTPS with certificate verification on, against sms-audit in front of the
stand-in SMS: register a source, read the config, list and read the task, update
it, report progress, post an action, send a log, upload a consistency result and
read it back. Each call must return exactly what the stand-in answers
(standin_answers.py); the upload is answered by sms-audit itself, and reading it
back shows the round the stand-in keeps for it once forwarded.

Usage: agent_run.py ENDPOINT CA_CERT AK SK PROJECT_ID OUT_FILE STANDIN_RECORD_FILE
Writes the calls made (method, path, status) to OUT_FILE.
"""
import json
import sys
import time

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdksms.v3 import (
    CollectLogRequest,
    ConsistencyResult,
    ListTasksRequest,
    PostSourceServerBody,
    PutTaskReq,
    RegisterServerRequest,
    SetConsistencyResultRequestBody,
    ShowConfigRequest,
    ShowConsistencyResultRequest,
    ShowTaskRequest,
    SmsClient,
    UpdateConsistencyResultRequest,
    UpdateTaskRequest,
    UpdateTaskSpeedReq,
    UpdateTaskSpeedRequest,
    UpdateTaskStatusReq,
    UpdateTaskStatusRequest,
    UploadLogRequestBody,
)

from standin_answers import SOURCE, TASK, answer_for


UPLOADED = [{"dir_check": "/root/data", "num_total_files": 1235, "num_different_files": 12,
             "num_target_miss_files": 12, "num_target_more_files": 12}]


def wait_for_forwarded_upload(record_file, path):
    """Forwarding is asynchronous: the stand-in holds the round once the upload
    reached it."""
    for _ in range(100):
        with open(record_file) as f:
            if any(json.loads(line)["method"] == "POST" and json.loads(line)["path"] == path
                   for line in f):
                return
        time.sleep(0.1)
    raise SystemExit(f"the upload never reached the stand-in at {path}")


def check_rounds(response, got):
    """SMS's rounds, through the SDK's ShowConsistencyResult: the one uploaded."""
    assert got["task_id"] == TASK, got
    rounds = got["result_list"]
    assert len(rounds) == 1, rounds
    assert rounds[0]["consistency_result"] == UPLOADED, rounds
    assert rounds[0]["check_result"] == "failed" and isinstance(rounds[0]["finished_time"], int), rounds
    # The SDK on PyPI types result_list as strings; newer ones as objects.
    assert len(response.result_list) == 1, response.result_list
    print(f"SDK show_consistency_result: SMS holds {len(rounds)} round, the upload's")


def main() -> int:
    endpoint, ca_cert, ak, sk, project_id, out_file, record_file = sys.argv[1:8]
    config = HttpConfig.get_default_config()
    config.ignore_ssl_verification = False
    config.ssl_ca_cert = ca_cert
    client = (
        SmsClient.new_builder()
        .with_http_config(config)
        .with_credentials(BasicCredentials(ak, sk, project_id))
        .with_endpoint(endpoint)
        .build()
    )
    calls = [
        ("POST", "/v3/sources", lambda: client.register_server(RegisterServerRequest(
            body=PostSourceServerBody(ip="192.168.0.10", name="src-01", hostname="src-01",
                                      os_type="LINUX", os_version="CENTOS_7_9_64BIT",
                                      firmware="BIOS", cpu_quantity=4, memory=8589934592,
                                      agent_version="25.1.0")))),
        ("GET", "/v3/config", lambda: client.show_config(ShowConfigRequest())),
        ("GET", "/v3/tasks", lambda: client.list_tasks(ListTasksRequest(
            state="READY", source_server_id=SOURCE, limit=10, offset=0))),
        ("GET", f"/v3/tasks/{TASK}", lambda: client.show_task(ShowTaskRequest(task_id=TASK))),
        ("PUT", f"/v3/tasks/{TASK}", lambda: client.update_task(UpdateTaskRequest(
            task_id=TASK, body=PutTaskReq(name="mig-01", speed_limit=100)))),
        ("PUT", f"/v3/tasks/{TASK}/progress", lambda: client.update_task_speed(UpdateTaskSpeedRequest(
            task_id=TASK, body=UpdateTaskSpeedReq(subtask_name="SYNC_DATA", progress=42,
                                                  replicatesize=1024, totalsize=4096,
                                                  process_trace="copying /root/data")))),
        ("POST", f"/v3/tasks/{TASK}/action", lambda: client.update_task_status(UpdateTaskStatusRequest(
            task_id=TASK, body=UpdateTaskStatusReq(operation="start")))),
        ("POST", f"/v3/tasks/{TASK}/log", lambda: client.collect_log(CollectLogRequest(
            task_id=TASK, body=UploadLogRequestBody(log_bucket="sms-logs-bucket")))),
        ("POST", f"/v3/tasks/{TASK}/consistency-result", lambda: client.update_consistency_result(
            UpdateConsistencyResultRequest(task_id=TASK, body=SetConsistencyResultRequestBody(
                consistency_result=[ConsistencyResult(
                    dir_check="/root/data", num_total_files=1235, num_different_files=12,
                    num_target_miss_files=12, num_target_more_files=12)])))),
        ("GET", f"/v3/tasks/{TASK}/consistency-result", lambda: client.show_consistency_result(
            ShowConsistencyResultRequest(task_id=TASK))),
    ]
    made = []
    for method, path, send in calls:
        if method == "GET" and path.endswith("/consistency-result"):
            wait_for_forwarded_upload(record_file, path)
        response = send()
        got = json.loads(response.raw_content or b"{}")
        expected = answer_for(method, path)
        if method == "GET" and path.endswith("/consistency-result"):
            check_rounds(response, got)
            expected = got
        if got != expected:
            print(f"{method} {path}: got {got!r}, the stand-in answers {expected!r}")
            return 1
        made.append({"method": method, "path": path, "status": response.status_code})
        print(f"SDK {method} {path}: {response.status_code}, as the stand-in answered")
    with open(out_file, "w") as f:
        json.dump(made, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
