-- Webhooks (tessera_core::webhook): endpoints registered per project, and an outbox of
-- deliveries written in the same transaction as the job state change that causes them, so a
-- restart loses none. Times are Unix milliseconds.
CREATE TABLE webhook_endpoints (
  endpoint_id TEXT PRIMARY KEY,
  project TEXT NOT NULL,
  url TEXT NOT NULL,
  -- Event names separated by spaces, with one leading and trailing: ' job.completed job.failed '.
  events TEXT NOT NULL,
  -- whsec_…: signing needs the secret itself (HMAC), so it is kept, unlike API keys.
  secret TEXT NOT NULL,
  -- Set when the endpoint answered 410 Gone: it receives nothing more.
  disabled_at BIGINT,
  created_at BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_of_project ON webhook_endpoints (project);

CREATE TABLE webhook_deliveries (
  delivery_id TEXT PRIMARY KEY,
  -- The webhook-id header: one per event, the same on every attempt and replay.
  message_id TEXT NOT NULL,
  endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (endpoint_id),
  project TEXT NOT NULL,
  event TEXT NOT NULL,
  -- The body, exactly as signed and sent.
  payload TEXT NOT NULL,
  -- pending | delivered | failed
  state TEXT NOT NULL,
  attempts BIGINT NOT NULL DEFAULT 0,
  next_at BIGINT NOT NULL,
  -- The process attempting it, until when: a killed one's delivery is taken again after.
  leased_by TEXT,
  lease_until BIGINT,
  last_status BIGINT,
  last_error TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  UNIQUE (message_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_at);
CREATE INDEX webhook_deliveries_listed ON webhook_deliveries (project, created_at);

-- The last tenth of a job's progress announced by a job.progress webhook (0 to 9): each
-- tenth is announced once, by the one progress update that raises this column.
ALTER TABLE jobs ADD COLUMN progress_step BIGINT NOT NULL DEFAULT 0;
