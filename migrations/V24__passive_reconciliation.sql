-- Passive reconciliation: SMS's answers that agents read through `--proxy` are
-- matched too, gathered in one `passive` run per UTC day; and every proxied
-- answer's SHA-256 is kept in the proxy log beside its size.
ALTER TABLE reconciliation_runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'active'
    CHECK (kind IN ('active', 'passive'));
ALTER TABLE proxy_calls ADD COLUMN response_sha256 TEXT;
