"""Tables of the embedded store for coalescing marks and approvals."""

# schema version 4: what an approval lets through, until when, and when it was used
APPROVAL_COLUMNS_V4 = ("breaches TEXT", "expires_ms INTEGER", "used_ms INTEGER")

EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS event_marks (mark TEXT PRIMARY KEY, ts_ms INTEGER NOT NULL)
  WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS approvals (
  id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, key_id TEXT NOT NULL, agent TEXT NOT NULL,
  scope TEXT NOT NULL, code TEXT NOT NULL, reason TEXT NOT NULL,
  estimated INTEGER NOT NULL, request TEXT NOT NULL,
  state TEXT NOT NULL,               -- pending | approved | denied | used
  decided_ms INTEGER, note TEXT, used_by TEXT,
  breaches TEXT,                     -- [[scope, code], …] the approval lets through
  expires_ms INTEGER, used_ms INTEGER
);
CREATE INDEX IF NOT EXISTS approvals_state ON approvals(state, created_ms);
"""
