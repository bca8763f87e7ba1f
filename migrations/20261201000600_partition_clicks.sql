-- Raw clicks partitioned by month of occurred_at (UTC), so retention drops whole months
-- (DROP TABLE, no row-by-row DELETE, no bloat) while the rollups keep their counts.
--
-- Partitions are named clicks_pYYYYMM and cover [first of the month, first of the next)
-- in UTC. The consumer's maintenance task (services/consumer/src/maintenance.rs) creates
-- them ahead of time and drops the ones older than CLICK_RETENTION_DAYS. clicks_default
-- takes a click of a month without a partition (a skewed clock), so an insert never
-- fails; maintenance moves such rows into their month's partition when it creates it.
--
-- A unique key on a partitioned table must contain the partition key: event_id becomes
-- unique together with occurred_at. A redelivered event carries the same occurred_at, so it
-- still conflicts and INSERT .. ON CONFLICT DO NOTHING still stores each event once.

-- The existing table is renamed out of the way (with the names of its constraints and
-- index) and copied into the partitioned one; the id sequence is kept.
ALTER TABLE clicks RENAME TO clicks_unpartitioned;
ALTER TABLE clicks_unpartitioned RENAME CONSTRAINT clicks_pkey TO clicks_unpartitioned_pkey;
ALTER TABLE clicks_unpartitioned
    RENAME CONSTRAINT clicks_event_id_key TO clicks_unpartitioned_event_id_key;
ALTER INDEX clicks_code_time_idx RENAME TO clicks_unpartitioned_code_time_idx;
ALTER SEQUENCE clicks_id_seq OWNED BY NONE;

-- Same columns, defaults (id from clicks_id_seq) and CHECK constraints, in the same order.
CREATE TABLE clicks (
    LIKE clicks_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS,
    CONSTRAINT clicks_pkey PRIMARY KEY (id, occurred_at),
    CONSTRAINT clicks_event_id_key UNIQUE (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX clicks_code_time_idx ON clicks (short_code, occurred_at)
    INCLUDE (is_bot, country_code, device_type, browser, os, traffic_source);

CREATE TABLE clicks_default PARTITION OF clicks DEFAULT;

-- A partition for every month holding clicks, this month and the next one.
DO $$
DECLARE
    month DATE;
BEGIN
    FOR month IN
        SELECT DISTINCT (date_trunc('month', occurred_at, 'UTC') AT TIME ZONE 'UTC')::date
        FROM clicks_unpartitioned
        UNION
        SELECT ((date_trunc('month', now(), 'UTC') AT TIME ZONE 'UTC') + make_interval(months => n))::date
        FROM generate_series(0, 1) n
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF clicks FOR VALUES FROM (%L) TO (%L)',
            'clicks_p' || to_char(month, 'YYYYMM'),
            month::timestamp AT TIME ZONE 'UTC',
            (month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
    END LOOP;
END
$$;

INSERT INTO clicks SELECT * FROM clicks_unpartitioned;
DROP TABLE clicks_unpartitioned;
ALTER SEQUENCE clicks_id_seq OWNED BY clicks.id;
ANALYZE clicks;
