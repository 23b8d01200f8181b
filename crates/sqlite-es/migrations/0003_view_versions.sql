-- The projection version each view table was last rebuilt with. Written in
-- the rebuild's own transaction; startup rebuilds a view only when its
-- projection declares another version. A migration that changes a view
-- table must come with a version bump of its projection.
CREATE TABLE IF NOT EXISTS view_versions (
    view    TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1)
) STRICT;
