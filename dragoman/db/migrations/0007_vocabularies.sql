-- Users' custom vocabularies (dragoman.v1.VocabularyService, issue 22). The
-- entries are one JSON document: read and written whole, never queried inside.
-- user_id is the gateway's user id (no foreign key: users is the gateway's
-- table); DeleteUserData deletes a user's vocabularies with the rest.
CREATE TABLE vocabularies (
    vocabulary_id text PRIMARY KEY,
    user_id       text NOT NULL,
    display_name  text NOT NULL,
    entries       jsonb NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX vocabularies_user ON vocabularies (user_id, created_at, vocabulary_id);
