-- Detect runs as several tasks: shards of one large mosaic (tessera_core::job::detect_shards)
-- and one task per photo. Stitch records how many of each; advance enqueues that many. Each
-- task keeps its own progress and window counts, so that the stage's progress is the sum
-- over its tasks.
ALTER TABLE jobs ADD COLUMN detect_shards BIGINT NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN detect_photos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN progress DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN windows_done BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN windows_total BIGINT NOT NULL DEFAULT 0;
