-- The session_svc replica that holds a live session in memory: the host:port
-- its gateways reach it at, so that every call about the session (JoinSession
-- by code included) is routed there. Empty for sessions of a single replica.
ALTER TABLE sessions ADD COLUMN owner text NOT NULL DEFAULT '';
