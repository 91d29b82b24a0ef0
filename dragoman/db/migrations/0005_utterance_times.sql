-- When each utterance was spoken, in milliseconds from the session's start
-- (its first word's audio arriving, its last word's), for transcripts with
-- timings (ExportTranscript). NULL in rows logged before they were kept.
ALTER TABLE translation_logs
    ADD COLUMN start_ms integer CHECK (start_ms >= 0),
    ADD COLUMN end_ms integer CHECK (end_ms >= start_ms);
