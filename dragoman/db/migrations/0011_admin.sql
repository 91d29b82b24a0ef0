-- Administration (issue 23 parts 1-3): disabled accounts, the audit log of
-- admin actions, and the indexes of the analytics queries
-- (session_svc/analytics.py), each named after the query it serves.

-- An admin disables an account (AdminService.DisableUser): no login or
-- refresh while set. NULL: enabled.
ALTER TABLE users ADD COLUMN disabled_at timestamptz;

-- One row per admin action (gateway). Who: the admin's id and name at the
-- time (no foreign key: the log outlives the account); from where: the
-- caller's IPv4 /24 or IPv6 /48, never the address. Rows are only ever
-- inserted: the trigger refuses UPDATE and DELETE, whoever asks.
CREATE TABLE admin_audit_log (
    entry_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    admin_user_id  text NOT NULL,
    admin_username text NOT NULL,
    action         text NOT NULL,
    target         text NOT NULL DEFAULT '',
    coarse_ip      text NOT NULL DEFAULT ''
);
CREATE FUNCTION admin_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'admin_audit_log is append-only';
END
$$;
CREATE TRIGGER admin_audit_log_append_only BEFORE UPDATE OR DELETE ON admin_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION admin_audit_log_append_only();

-- Sessions and minutes per day: sessions created in a range.
CREATE INDEX sessions_created ON sessions (created_at) INCLUDE (ended_at);
-- Live sessions, newest first (ListLiveSessions).
CREATE INDEX sessions_live ON sessions (created_at DESC) WHERE status <> 'ended';
-- Language pairs by use and latency percentiles per stage, pair and day:
-- translation logs written in a range, read from the index alone.
CREATE INDEX translation_logs_analytics ON translation_logs (created_at)
    INCLUDE (source_language_code, target_language_code, endpointing_ms, recognition_ms,
             translation_ms, synthesis_first_chunk_ms, delivery_ms, total_ms);
-- Error and low-confidence shares: metrics of sessions ended in a range.
CREATE INDEX session_metrics_created ON session_metrics (created_at)
    INCLUDE (utterance_count, error_count, transcribed_count, low_confidence_count);
