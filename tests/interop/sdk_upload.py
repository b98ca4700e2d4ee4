"""Upload through the official Huawei Cloud Python SDK (huaweicloudsdksms).

Usage: sdk_upload.py ENDPOINT TASK_ID AK SK PROJECT_ID [--expect-status N]

Exits 0 when the SDK call ends as expected: accepted (no exception) by default,
or an error with the given HTTP status.
"""
import argparse
import sys

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdksms.v3 import (
    ConsistencyResult,
    SmsClient,
    UpdateConsistencyResultRequest,
    SetConsistencyResultRequestBody,
)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("endpoint")
    p.add_argument("task_id")
    p.add_argument("ak")
    p.add_argument("sk")
    p.add_argument("project_id")
    p.add_argument("--expect-status", type=int, default=200)
    a = p.parse_args()

    credentials = BasicCredentials(a.ak, a.sk, a.project_id)
    client = (
        SmsClient.new_builder()
        .with_credentials(credentials)
        .with_endpoint(a.endpoint)
        .build()
    )
    request = UpdateConsistencyResultRequest(
        task_id=a.task_id,
        body=SetConsistencyResultRequestBody(
            consistency_result=[
                ConsistencyResult(
                    dir_check="/root/data",
                    num_total_files=1235,
                    num_different_files=12,
                    num_target_miss_files=12,
                    num_target_more_files=12,
                ),
                ConsistencyResult(
                    dir_check="/var",
                    num_total_files=1235,
                    num_different_files=0,
                    num_target_miss_files=1,
                    num_target_more_files=2,
                ),
            ]
        ),
    )
    try:
        response = client.update_consistency_result(request)
    except exceptions.ClientRequestException as e:
        print(f"SDK error: status={e.status_code} code={e.error_code} msg={e.error_msg} "
              f"request_id={e.request_id}")
        if e.status_code == a.expect_status:
            return 0
        return 1
    print(f"SDK accepted: status={response.status_code}")
    return 0 if a.expect_status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
