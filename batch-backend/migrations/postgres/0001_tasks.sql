-- The task queue (tessera_core::queue). Times are Unix milliseconds.
CREATE TABLE tasks (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  unique_key TEXT NOT NULL UNIQUE,
  job_id TEXT NOT NULL,
  stage TEXT NOT NULL,
  shard BIGINT NOT NULL,
  state TEXT NOT NULL,
  attempt BIGINT NOT NULL DEFAULT 0,
  max_attempts BIGINT NOT NULL,
  errors BIGINT NOT NULL DEFAULT 0,
  last_error TEXT,
  run_at BIGINT NOT NULL,
  leased_by TEXT,
  lease_until BIGINT,
  created_at BIGINT NOT NULL,
  finished_at BIGINT
);
CREATE INDEX tasks_claimable ON tasks (state, run_at, id);
CREATE INDEX tasks_running ON tasks (state, lease_until);

-- One row per claim: who held the task, from when, until when, and how it ended.
CREATE TABLE task_attempts (
  task_id BIGINT NOT NULL REFERENCES tasks (id),
  attempt BIGINT NOT NULL,
  worker TEXT NOT NULL,
  started_at BIGINT NOT NULL,
  ended_at BIGINT,
  outcome TEXT,
  PRIMARY KEY (task_id, attempt)
);
