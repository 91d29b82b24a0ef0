-- Recordings of sessions, kept only with every participant's consent
-- (docs/recording.md). A recording is asked for, answered by everyone asked
-- (recording_consents), and keeps items (recording_items) only while its
-- state is 'recording': the insert of an item checks that in the same
-- statement, so nothing lands once a withdrawal has committed.
CREATE TABLE recordings (
    recording_id             text PRIMARY KEY,
    session_id               text NOT NULL REFERENCES sessions ON DELETE CASCADE,
    requested_by             text NOT NULL,
    state                    text NOT NULL
        CHECK (state IN ('awaiting-consent', 'recording', 'stopped', 'declined')),
    translated_speech        boolean NOT NULL,
    original_voice_requested boolean NOT NULL,
    original_voice           boolean NOT NULL DEFAULT false,
    requested_at             timestamptz NOT NULL,
    started_at               timestamptz,
    stopped_at               timestamptz,
    stop_reason              text NOT NULL DEFAULT '',
    stopped_by               text NOT NULL DEFAULT '',
    expires_at               timestamptz NOT NULL
);
CREATE INDEX recordings_session ON recordings (session_id);
-- the sweeper deletes by it
CREATE INDEX recordings_expiry ON recordings (expires_at);

-- Everyone asked, in roster order: they alone see the recording.
CREATE TABLE recording_consents (
    recording_id   text NOT NULL REFERENCES recordings ON DELETE CASCADE,
    user_id        text NOT NULL,
    position       integer NOT NULL,
    display_name   text NOT NULL,
    answer         text NOT NULL
        CHECK (answer IN ('pending', 'granted', 'declined', 'withdrawn')),
    original_voice boolean NOT NULL DEFAULT false,
    answered_at    timestamptz,
    PRIMARY KEY (recording_id, user_id)
);
CREATE INDEX recording_consents_user ON recording_consents (user_id);

-- What a recording kept of an utterance: its transcript, a translation, the
-- translated speech (Ogg Opus) or the speaker's own voice (Ogg Opus).
-- `content` is nonce || AES-256-GCM ciphertext || tag under the text keys
-- (key_id), with "recording_items:<item_id>" as associated data.
CREATE TABLE recording_items (
    item_id         uuid PRIMARY KEY,
    recording_id    text NOT NULL REFERENCES recordings ON DELETE CASCADE,
    utterance_id    text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('transcript', 'translation', 'speech', 'voice')),
    language_code   text NOT NULL,
    voice           text NOT NULL DEFAULT '',
    speaker_user_id text NOT NULL,
    spoken_at       timestamptz NOT NULL,
    spoken_until    timestamptz NOT NULL,
    duration_ms     integer NOT NULL DEFAULT 0,
    key_id          text NOT NULL,
    content         bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (recording_id, utterance_id, kind, language_code, voice)
);
