"""What the stand-in SMS answers, by method and path pattern; shared by the
stand-in (standin_sms.py) and the agent run (agent_run.py), which checks that
every SDK call got exactly this back through sms-audit."""
import json
import re
import time

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
    ("POST", rf"/v3/tasks/{TASK}/consistency-result", {}),
]

# Each task's verification rounds, as SMS keeps them: an accepted upload appends one
# (finished at the body's finished_time, else now in milliseconds; check_result
# "success" without problems, "failed" with); ShowConsistencyResult lists them.
ROUNDS = {TASK: []}
RESULTS = re.compile(r"/v3/tasks/([^/]+)/consistency-result")


def round_of(body):
    """The round SMS keeps for an upload's body."""
    dirs = json.loads(body or b"{}").get("consistency_result") or []
    problems = any(d.get(k, 0) for d in dirs
                   for k in ("num_different_files", "num_target_miss_files", "num_target_more_files"))
    finished = json.loads(body or b"{}").get("finished_time") or int(time.time() * 1000)
    return {"finished_time": finished, "check_result": "failed" if problems else "success",
            "consistency_result": dirs}


def results_answer(method, path, body):
    """SMS's answer to a task's results: appended on POST, listed on GET."""
    m = RESULTS.fullmatch(path)
    if not m or m.group(1) not in ROUNDS:
        return None
    if method == "POST":
        ROUNDS[m.group(1)].append(round_of(body))
        return {}
    if method == "GET":
        return {"task_id": m.group(1), "result_list": ROUNDS[m.group(1)]}
    return None


def answer_for(method, path):
    for m, pattern, body in ANSWERS:
        if m == method and re.fullmatch(pattern, path):
            return body
    return None
