-- What another session_svc replica needs to take a live session over when its
-- replica stops (docs/handover.md). `state` is the session's snapshot (members,
-- settings, counters) as JSON, rewritten by its owner as the session changes.
CREATE TABLE session_state (
    session_id text PRIMARY KEY REFERENCES sessions ON DELETE CASCADE,
    state      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Each participant's event-log tail for resume_after_sequence, bounded as the
-- in-memory log is. `event` is the serialized ConversationEvent sealed under
-- the server keyring (key_id), bound to its row; in private and
-- participant-keyed sessions its text and speech are removed before sealing.
CREATE TABLE session_events (
    session_id text NOT NULL REFERENCES sessions ON DELETE CASCADE,
    user_id    text NOT NULL,
    sequence   bigint NOT NULL,
    key_id     text NOT NULL,
    event      bytea NOT NULL,
    PRIMARY KEY (session_id, user_id, sequence)
);
