-- Sign-in with OpenID Connect (issue 23 part 4, docs/accounts.md).
-- An account's identities at providers: (issuer, subject) is who the
-- provider says signed in; one account may have several.
CREATE TABLE oidc_identities (
    issuer     text NOT NULL,
    subject    text NOT NULL,
    user_id    text NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX oidc_identities_user ON oidc_identities (user_id);

-- Sign-ins begun (StartSignIn) and not yet finished, by the sha256 of their
-- state: taken (deleted) on first use. The link_* columns are set on a
-- sign-in that waits for the password of the account it would link to.
CREATE TABLE oidc_states (
    state_hash    text PRIMARY KEY,
    provider      text NOT NULL,
    nonce         text NOT NULL,
    code_verifier text NOT NULL,
    redirect_uri  text NOT NULL,
    expires_at    timestamptz NOT NULL,
    link_user_id  text REFERENCES users ON DELETE CASCADE,
    link_issuer   text,
    link_subject  text
);
CREATE INDEX oidc_states_expiry ON oidc_states (expires_at);
