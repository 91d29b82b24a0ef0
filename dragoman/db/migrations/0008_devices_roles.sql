-- Roles of accounts (issue 23 part 1): every account is a user; `dragoman
-- admin create` adds admin. Never set through the public API.
ALTER TABLE users
    ADD COLUMN roles text[] NOT NULL DEFAULT '{user}'
        CHECK (roles <@ '{user,admin}'::text[] AND 'user' = ANY (roles));
CREATE INDEX users_admins ON users (user_id) WHERE 'admin' = ANY (roles);

-- Each login (refresh token family) is a device the user can list and revoke
-- (issue 23 part 5): the name its client gave, its user agent, when it was
-- last used and from where, coarsely (an IPv4 /24 or IPv6 /48, never the
-- address). Logins made before this carry empty names and their creation time.
ALTER TABLE login_families
    ADD COLUMN device_name  text NOT NULL DEFAULT '',
    ADD COLUMN user_agent   text NOT NULL DEFAULT '',
    ADD COLUMN coarse_ip    text NOT NULL DEFAULT '',
    ADD COLUMN last_seen_at timestamptz;
UPDATE login_families SET last_seen_at = created_at;
ALTER TABLE login_families
    ALTER COLUMN last_seen_at SET DEFAULT now(),
    ALTER COLUMN last_seen_at SET NOT NULL;
