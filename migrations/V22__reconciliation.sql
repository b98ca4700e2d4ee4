-- Reconciliation with SMS: each run that read tasks' results back from SMS, and
-- what it found per task (SMS's answer kept byte for byte, with its hash).

CREATE TABLE reconciliation_runs (
    id            INTEGER PRIMARY KEY,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    -- The SMS endpoint read.
    target        TEXT    NOT NULL,
    -- Which tasks and rounds: JSON {"tasks": [...], "since": ms or null}.
    scope         TEXT    NOT NULL,
    -- Uploads in the ledger when the run began: what it was compared against.
    ledger_size   INTEGER NOT NULL,
    -- 'partial' when SMS failed mid-run: `reconcile --resume` goes on.
    state         TEXT    NOT NULL CHECK (state IN ('running', 'finished', 'partial')),
    stopped_by    TEXT,
    -- The signed summary (a C2SP signed note), once finished.
    summary_note  TEXT
);

CREATE TABLE reconciliation_tasks (
    run_id         INTEGER NOT NULL REFERENCES reconciliation_runs (id),
    task_id        TEXT    NOT NULL,
    verdict        TEXT    NOT NULL CHECK (verdict IN
                   ('match', 'missing-in-sms', 'foreign', 'differs', 'not-checked')),
    -- Why a task was not checked.
    reason         TEXT,
    checked_at     INTEGER NOT NULL,
    http_status    INTEGER,
    answer         BLOB,
    answer_sha256  TEXT,
    -- JSON: matched, missing_in_sms, foreign, differs (round indexes, upload ids).
    findings       TEXT    NOT NULL,
    PRIMARY KEY (run_id, task_id)
) WITHOUT ROWID;
CREATE INDEX reconciliation_tasks_by_verdict ON reconciliation_tasks (run_id, verdict, task_id);
-- A task's newest outcome (its page).
CREATE INDEX reconciliation_tasks_by_task ON reconciliation_tasks (task_id, run_id);
