-- Liveness of the session_svc replicas that own sessions: each one renews its
-- row while it runs. The live sessions of an owner silent for long are ended
-- by the others (their state died with it), so calls about them stop going there.
CREATE TABLE session_owners (
    owner   text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);
