-- A job's own webhook endpoint (`webhook_url` on POST /v1/jobs): it receives that job's events
-- only. NULL for a project's endpoint, which receives every job's.
ALTER TABLE webhook_endpoints ADD COLUMN job_id TEXT;
