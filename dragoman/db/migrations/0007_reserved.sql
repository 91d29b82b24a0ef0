-- Placeholder holding version 7 for the `vocab` branch (0007_vocabularies.sql),
-- so that this branch's 0008 applies on its own. Delete this file when merging
-- with that branch: two files of version 7 are refused.
SELECT 1;
