-- A job's tasks by stage: advance counts a stage's open tasks after every task, which
-- without this index reads every task ever queued.
CREATE INDEX tasks_of_job ON tasks (job_id, stage, state);
