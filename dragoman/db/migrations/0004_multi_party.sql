-- Sessions of two to eight participants (issue 19). Rows written before
-- stay valid: their sessions had two participants, both joined.
ALTER TABLE session_participants DROP CONSTRAINT session_participants_position_check;
ALTER TABLE session_participants
    ADD CONSTRAINT session_participants_position_check CHECK (position BETWEEN 1 AND 8),
    -- left: may join again; removed: by the host, may not
    ADD COLUMN state text NOT NULL DEFAULT 'joined'
        CHECK (state IN ('joined', 'left', 'removed')),
    ADD COLUMN left_at timestamptz;  -- when they last left or were removed

ALTER TABLE sessions
    ADD COLUMN locked boolean NOT NULL DEFAULT false,
    ADD COLUMN max_participants smallint NOT NULL DEFAULT 2
        CHECK (max_participants BETWEEN 2 AND 8);

-- An utterance is translated once per target language: one row for each.
ALTER TABLE translation_logs DROP CONSTRAINT translation_logs_session_id_utterance_id_key;
ALTER TABLE translation_logs
    ADD CONSTRAINT translation_logs_utterance_target_key
        UNIQUE (session_id, utterance_id, target_language_code);

-- Numbers of each participant of an ended session, written with session_metrics.
-- They go with the participant's row (DeleteUserData).
CREATE TABLE session_participant_metrics (
    session_id        text NOT NULL,
    user_id           text NOT NULL,
    utterances_spoken integer NOT NULL,
    utterances_heard  integer NOT NULL,
    mean_latency_ms   double precision NOT NULL,
    p95_latency_ms    double precision NOT NULL,
    error_count       integer NOT NULL,
    PRIMARY KEY (session_id, user_id),
    FOREIGN KEY (session_id, user_id) REFERENCES session_participants ON DELETE CASCADE
);
