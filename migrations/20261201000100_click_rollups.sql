-- Pre-aggregated click counts, maintained by the consumer in the transaction that stores
-- the raw clicks, from the rows its INSERT really added (a redelivered click adds nothing).
-- Reads (counts, breakdowns, series) come from here, so their cost does not grow with the
-- number of clicks of a link.

-- Operating system (woothee) and the bot flag (crates/common bots + woothee crawlers).
ALTER TABLE clicks
    ADD COLUMN os     TEXT    NOT NULL DEFAULT 'unknown',
    ADD COLUMN is_bot BOOLEAN NOT NULL DEFAULT false;
UPDATE clicks SET is_bot = true
WHERE device_type = 'bot' OR coalesce(btrim(user_agent), '') = '';

-- Minute series still read raw clicks (bounded ranges): humans and bots apart.
DROP INDEX clicks_code_time_idx;
CREATE INDEX clicks_code_time_idx ON clicks (short_code, occurred_at)
    INCLUDE (is_bot, country_code, device_type, browser, os, traffic_source);

-- A link's all-time totals. Spread over slot rows (the writer picks one at random per
-- batch) so concurrent writers of a hot link do not queue on one row; a read sums them.
CREATE TABLE click_totals (
    short_code TEXT     NOT NULL,
    slot       SMALLINT NOT NULL,
    humans     BIGINT   NOT NULL DEFAULT 0,
    bots       BIGINT   NOT NULL DEFAULT 0,
    PRIMARY KEY (short_code, slot)
) WITH (fillfactor = 70);

-- Per link and hour (UTC): human and bot clicks, and unique visitors: a visitor is
-- counted in the hour of their first click of that day, so an hour's figure is "new
-- visitors that hour" and a day's sum is the day's exact unique visitors.
CREATE TABLE click_hourly (
    short_code TEXT        NOT NULL,
    hour       TIMESTAMPTZ NOT NULL,
    humans     BIGINT      NOT NULL DEFAULT 0,
    bots       BIGINT      NOT NULL DEFAULT 0,
    visitors   BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (short_code, hour)
) WITH (fillfactor = 70);

-- Clicks per link, hour and combination of dimensions. One row per combination seen (not
-- one per dimension value), so a click touches one row per grain; breakdowns are grouping
-- sets over these rows. The daily table answers the whole days of a range, the hourly one
-- its partial days.
CREATE TABLE click_dims_hourly (
    short_code     TEXT        NOT NULL,
    bucket         TIMESTAMPTZ NOT NULL,
    is_bot         BOOLEAN     NOT NULL,
    country_code   TEXT        NOT NULL,
    device_type    TEXT        NOT NULL,
    browser        TEXT        NOT NULL,
    os             TEXT        NOT NULL,
    traffic_source TEXT        NOT NULL,
    clicks         BIGINT      NOT NULL,
    PRIMARY KEY (short_code, bucket, is_bot, country_code, device_type, browser, os, traffic_source)
) WITH (fillfactor = 70);

CREATE TABLE click_dims_daily (LIKE click_dims_hourly INCLUDING ALL) WITH (fillfactor = 70);

-- Unique visitors: keyed hashes of IP + User-Agent, one set per link and day. The key
-- is random per day and deleted with the sets after a few days (click_maintenance), so a
-- stored hash can no longer be tied to an address; IP and User-Agent never enter these.
CREATE TABLE visitor_salts (
    day        DATE        PRIMARY KEY,
    salt       BYTEA       NOT NULL CHECK (octet_length(salt) = 32),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE click_visitors (
    short_code TEXT  NOT NULL,
    day        DATE  NOT NULL,
    visitor    BYTEA NOT NULL,
    PRIMARY KEY (short_code, day, visitor)
);

-- Referers that are IP literals fold into one source (an attacker can invent any number).
CREATE FUNCTION click_source_folded(source TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN source ~ '^[0-9.]+$' OR source LIKE '%:%' THEN 'ip' ELSE source END
$$;

-- Recomputes every rollup's click counts from the raw clicks it can see (visitor counts of
-- rebuilt hours are lost: the hashes of past days cannot be recomputed). Used once below
-- for the clicks stored before rollups existed, and to seed rollups after bulk-loading raw
-- clicks (benchmarks, tests). Raw clicks dropped by retention are no longer counted after
-- a rebuild: do not run it on a live system.
CREATE FUNCTION rebuild_click_rollups() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Writers wait while the counts are rebuilt: none is missed or counted twice.
    LOCK TABLE clicks IN SHARE MODE;
    TRUNCATE click_totals, click_hourly, click_dims_hourly, click_dims_daily;
    INSERT INTO click_totals (short_code, slot, humans, bots)
    SELECT short_code, 0, count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot)
    FROM clicks GROUP BY short_code;
    INSERT INTO click_hourly (short_code, hour, humans, bots)
    SELECT short_code, date_trunc('hour', occurred_at, 'UTC'),
           count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot)
    FROM clicks GROUP BY 1, 2;
    INSERT INTO click_dims_hourly
    SELECT short_code, date_trunc('hour', occurred_at, 'UTC'), is_bot, country_code,
           device_type, browser, os, click_source_folded(traffic_source), count(*)
    FROM clicks GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;
    INSERT INTO click_dims_daily
    SELECT short_code, date_trunc('day', bucket, 'UTC'), is_bot, country_code, device_type,
           browser, os, traffic_source, sum(clicks)
    FROM click_dims_hourly GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;
END
$$;

SELECT rebuild_click_rollups();
