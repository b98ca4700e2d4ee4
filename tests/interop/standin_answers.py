"""What the stand-in SMS answers, by method and path pattern; shared by the
stand-in (standin_sms.py) and the agent run (agent_run.py), which checks that
every SDK call got exactly this back through sms-audit."""
import re

TASK = "137224b7-8d7c-4919-b33e-ed1597780001"
SOURCE = "a5a9b6a1-0000-4c4e-8d7a-5f0e7b5c0001"

ANSWERS = [
    ("POST", r"/v3/sources", {"id": SOURCE}),
    ("GET", r"/v3/config", {"config": {"region": "cn-north-4", "log_level": "info"}}),
    ("GET", r"/v3/tasks", {"count": 1, "tasks": [{"id": TASK, "name": "mig-01", "state": "READY"}]}),
    ("GET", rf"/v3/tasks/{TASK}", {"id": TASK, "name": "mig-01", "type": "MIGRATE_FILE", "state": "READY",
                                   "os_type": "LINUX", "priority": 1, "speed_limit": 0}),
    ("PUT", rf"/v3/tasks/{TASK}", {}),
    ("PUT", rf"/v3/tasks/{TASK}/progress", {}),
    ("POST", rf"/v3/tasks/{TASK}/action", {}),
    ("POST", rf"/v3/tasks/{TASK}/log", {}),
    ("GET", rf"/v3/tasks/{TASK}/consistency-result",
     {"task_id": TASK, "result_list": [{"finished_time": 1700000000000, "check_result": [
         {"dir_check": "/root/data", "num_total_files": 1235, "num_different_files": 12,
          "num_target_miss_files": 12, "num_target_more_files": 12}]}]}),
    ("POST", rf"/v3/tasks/{TASK}/consistency-result", {}),
]


def answer_for(method, path):
    for m, pattern, body in ANSWERS:
        if m == method and re.fullmatch(pattern, path):
            return body
    return None
