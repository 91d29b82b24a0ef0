-- How many final transcripts an ended session had, and how many the recogniser
-- was unsure of (SessionMetrics.low_confidence_share). Sessions ended before
-- this count none.
ALTER TABLE session_metrics
    ADD COLUMN transcribed_count    integer NOT NULL DEFAULT 0,
    ADD COLUMN low_confidence_count integer NOT NULL DEFAULT 0;
