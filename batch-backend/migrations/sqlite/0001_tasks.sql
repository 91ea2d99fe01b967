-- The task queue (tessera_core::queue). Times are Unix milliseconds.
CREATE TABLE tasks (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  unique_key TEXT NOT NULL UNIQUE,
  job_id TEXT NOT NULL,
  stage TEXT NOT NULL,
  shard INTEGER NOT NULL,
  state TEXT NOT NULL,
  attempt INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL,
  errors INTEGER NOT NULL DEFAULT 0,
  last_error TEXT,
  run_at INTEGER NOT NULL,
  leased_by TEXT,
  lease_until INTEGER,
  created_at INTEGER NOT NULL,
  finished_at INTEGER
);
CREATE INDEX tasks_claimable ON tasks (state, run_at, id);
CREATE INDEX tasks_running ON tasks (state, lease_until);

-- One row per claim: who held the task, from when, until when, and how it ended.
CREATE TABLE task_attempts (
  task_id INTEGER NOT NULL REFERENCES tasks (id),
  attempt INTEGER NOT NULL,
  worker TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  ended_at INTEGER,
  outcome TEXT,
  PRIMARY KEY (task_id, attempt)
);
