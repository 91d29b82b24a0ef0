-- Accounts, logins, sessions, translation logs and session metrics.
-- Audio is never stored: no column here holds audio. Text of what people
-- said is stored only encrypted (AES-256-GCM), with the id of its key.

-- Accounts (gateway).
CREATE TABLE users (
    user_id                 text PRIMARY KEY,
    username                text NOT NULL,
    email                   text NOT NULL,
    password_hash           text NOT NULL,  -- argon2id, PHC string
    preferred_language_code text NOT NULL,
    created_at              timestamptz NOT NULL
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- One row per login; its refresh tokens rotate within it. Revoking the
-- family revokes every token of the login, present and future.
CREATE TABLE login_families (
    family_id  text PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX login_families_user ON login_families (user_id);

-- Refresh tokens, stored as sha256 digests only.
CREATE TABLE refresh_tokens (
    token_hash text PRIMARY KEY,
    family_id  text NOT NULL REFERENCES login_families ON DELETE CASCADE,
    user_id    text NOT NULL REFERENCES users ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    spent_at   timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

-- Sessions (session_svc). Participants are users of the gateway, asserted
-- by it; there is deliberately no foreign key to users, so that session_svc
-- does not depend on the gateway's tables.
CREATE TABLE sessions (
    session_id    text PRIMARY KEY,
    code          text NOT NULL CHECK (code ~ '^[0-9]{6}$'),
    status        text NOT NULL DEFAULT 'waiting'
                  CHECK (status IN ('waiting', 'active', 'ended')),
    created_at    timestamptz NOT NULL,
    joined_at     timestamptz,
    ended_at      timestamptz,
    end_reason    text,
    message_count integer NOT NULL DEFAULT 0
);
-- A pairing code is unique among live sessions.
CREATE UNIQUE INDEX sessions_live_code_key ON sessions (code) WHERE status <> 'ended';
CREATE INDEX sessions_waiting_since ON sessions (created_at) WHERE status = 'waiting';

CREATE TABLE session_participants (
    session_id         text NOT NULL REFERENCES sessions ON DELETE CASCADE,
    user_id            text NOT NULL,
    position           smallint NOT NULL CHECK (position IN (1, 2)),  -- 1: creator
    display_name       text NOT NULL,
    language_code      text NOT NULL,
    voice              text NOT NULL DEFAULT '',
    joined_at          timestamptz NOT NULL,
    session_created_at timestamptz NOT NULL,  -- copy of sessions.created_at, for history pages
    PRIMARY KEY (session_id, user_id),
    UNIQUE (session_id, position)
);
CREATE INDEX session_participants_history
    ON session_participants (user_id, session_created_at DESC, session_id DESC);

-- One row per translated utterance. source_text and translated_text are
-- nonce || AES-256-GCM ciphertext and tag, under the key `key_id`.
CREATE TABLE translation_logs (
    log_id                   uuid PRIMARY KEY,
    session_id               text NOT NULL REFERENCES sessions ON DELETE CASCADE,
    utterance_id             text NOT NULL,
    speaker_user_id          text NOT NULL,
    source_language_code     text NOT NULL,
    target_language_code     text NOT NULL,
    key_id                   text NOT NULL,
    source_text              bytea NOT NULL,
    translated_text          bytea NOT NULL,
    endpointing_ms           integer NOT NULL,
    recognition_ms           integer NOT NULL,
    translation_ms           integer NOT NULL,
    synthesis_first_chunk_ms integer NOT NULL,
    delivery_ms              integer NOT NULL,
    total_ms                 integer NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (session_id, utterance_id)
);
CREATE INDEX translation_logs_speaker ON translation_logs (speaker_user_id);
CREATE INDEX translation_logs_key ON translation_logs (key_id);

-- Numbers of an ended session, written when it ends.
CREATE TABLE session_metrics (
    session_id      text PRIMARY KEY REFERENCES sessions ON DELETE CASCADE,
    utterance_count integer NOT NULL,
    error_count     integer NOT NULL,
    mean_latency_ms double precision NOT NULL,
    min_latency_ms  double precision NOT NULL,
    max_latency_ms  double precision NOT NULL,
    duration_ms     bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
