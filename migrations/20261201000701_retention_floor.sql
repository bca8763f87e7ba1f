-- The oldest click time still kept, raised by the maintenance task before it drops
-- partitions or purges the default one. A click older than this cannot be recognised as a
-- redelivery any more (its stored copy may be gone), so the consumer neither stores nor
-- counts it: a redelivered expired click is not counted twice.
CREATE TABLE retention_floor (
    only_row  BOOLEAN     PRIMARY KEY DEFAULT true CHECK (only_row),
    kept_from TIMESTAMPTZ NOT NULL
);
