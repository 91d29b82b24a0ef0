-- Privacy modes (docs/privacy.md). What the server keeps of a session's text:
-- 'standard' (translation_logs, under server keys), 'private' (no text at all)
-- or 'participant-keyed' (participant_logs, each row under its reader's key,
-- which the server does not keep). Sessions created before this are standard.
ALTER TABLE sessions
    ADD COLUMN privacy_mode text NOT NULL DEFAULT 'standard'
        CHECK (privacy_mode IN ('standard', 'private', 'participant-keyed'));

-- One participant's copy of an utterance in a participant-keyed session:
-- `sealed` is nonce (12 bytes) || AES-256-GCM ciphertext || tag of a JSON
-- object (speaker, languages, text, translation) under the reader's key, with
-- "participant_logs:<log_id>" as associated data.
CREATE TABLE participant_logs (
    log_id       uuid PRIMARY KEY,
    session_id   text NOT NULL REFERENCES sessions ON DELETE CASCADE,
    user_id      text NOT NULL,
    utterance_id text NOT NULL,
    start_ms     integer,
    end_ms       integer,
    sealed       bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (session_id, user_id, utterance_id)
);
CREATE INDEX participant_logs_reader ON participant_logs (user_id);
