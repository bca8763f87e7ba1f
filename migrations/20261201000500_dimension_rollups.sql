-- Breakdowns per dimension instead of per combination of dimensions. A link's stats read
-- one row per (bucket, dimension, value, is_bot): their number grows with the distinct
-- values of each dimension, not with the product of them, and traffic sources are capped
-- per link and day, so a breakdown's cost stays bounded whatever the clicks.

CREATE TYPE click_dimension AS ENUM ('country', 'device', 'browser', 'os', 'source');

-- Clicks per link, hour (UTC), dimension, value and bot flag. The daily table answers
-- the whole days of a range, the hourly one its partial days.
CREATE TABLE click_breakdown_hourly (
    short_code TEXT            NOT NULL,
    bucket     TIMESTAMPTZ     NOT NULL,
    dimension  click_dimension NOT NULL,
    value      TEXT            NOT NULL,
    is_bot     BOOLEAN         NOT NULL,
    clicks     BIGINT          NOT NULL,
    PRIMARY KEY (short_code, bucket, dimension, value, is_bot)
) WITH (fillfactor = 70);

CREATE TABLE click_breakdown_daily (LIKE click_breakdown_hourly INCLUDING ALL)
    WITH (fillfactor = 70);

-- Distinct traffic sources kept per link and day (docs/performance.md, "Referer flood"):
-- once a link's day holds this many, its further new sources are counted under
-- click_source_fold(), which reads count into the `other` entry. Anyone can send any
-- Referer, so without a cap one link could be given millions of rows.
CREATE FUNCTION click_source_cap() RETURNS INT
LANGUAGE sql IMMUTABLE AS $$ SELECT 100 $$;

-- Not a registrable domain nor a named source: parentheses never come out of
-- traffic_source() for a host a browser can send.
CREATE FUNCTION click_source_fold() RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$ SELECT '(other)'::text $$;

-- Fills both breakdown tables from pg_temp.click_combos (short_code, hour, is_bot,
-- country_code, device_type, browser, os, traffic_source, clicks), which the caller
-- creates. Each link's day keeps its click_source_cap() largest sources (ties by name);
-- the consumer, which sees clicks arrive, keeps the first ones instead.
CREATE FUNCTION fill_click_breakdowns() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO click_breakdown_hourly
    WITH unpivoted AS (
        SELECT c.short_code, c.hour, d.dimension, d.value, c.is_bot, sum(c.clicks) AS clicks
        FROM pg_temp.click_combos c
        CROSS JOIN LATERAL (VALUES ('country'::click_dimension, c.country_code),
                                   ('device', c.device_type), ('browser', c.browser),
                                   ('os', c.os), ('source', c.traffic_source))
            AS d (dimension, value)
        GROUP BY 1, 2, 3, 4, 5),
    kept AS (
        SELECT short_code, day, value
        FROM (SELECT short_code, date_trunc('day', hour, 'UTC') AS day, value,
                     row_number() OVER (PARTITION BY short_code, date_trunc('day', hour, 'UTC')
                                        ORDER BY sum(clicks) DESC, value) AS rank
              FROM unpivoted
              WHERE dimension = 'source' AND value <> click_source_fold()
              GROUP BY 1, 2, 3) r
        WHERE rank <= click_source_cap())
    SELECT u.short_code, u.hour, u.dimension,
           CASE WHEN u.dimension = 'source' AND k.value IS NULL THEN click_source_fold()
                ELSE u.value END,
           u.is_bot, sum(u.clicks)
    FROM unpivoted u
    LEFT JOIN kept k ON u.dimension = 'source' AND k.short_code = u.short_code
                    AND k.day = date_trunc('day', u.hour, 'UTC') AND k.value = u.value
    GROUP BY 1, 2, 3, 4, 5;

    INSERT INTO click_breakdown_daily
    SELECT short_code, date_trunc('day', bucket, 'UTC'), dimension, value, is_bot, sum(clicks)
    FROM click_breakdown_hourly
    GROUP BY 1, 2, 3, 4, 5;
END
$$;

-- Backfill from the combination rows (they count every click stored so far, whatever
-- happens later to the raw clicks).
CREATE TEMP TABLE click_combos ON COMMIT DROP AS
SELECT short_code, bucket AS hour, is_bot, country_code, device_type, browser, os,
       traffic_source, clicks
FROM click_dims_hourly;
SELECT fill_click_breakdowns();
DROP TABLE pg_temp.click_combos;

DROP TABLE click_dims_hourly, click_dims_daily;

-- Recomputes every rollup's click counts from the raw clicks it can see (visitor counts of
-- rebuilt hours are lost: the hashes of past days cannot be recomputed). Used to seed
-- rollups after bulk-loading raw clicks (benchmarks, tests). Raw clicks no longer stored
-- are no longer counted after a rebuild: do not run it on a live system.
CREATE OR REPLACE FUNCTION rebuild_click_rollups() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Writers wait while the counts are rebuilt: none is missed or counted twice.
    LOCK TABLE clicks IN SHARE MODE;
    TRUNCATE click_totals, click_hourly, click_breakdown_hourly, click_breakdown_daily;
    INSERT INTO click_totals (short_code, slot, humans, bots)
    SELECT short_code, 0, count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot)
    FROM clicks GROUP BY short_code;
    INSERT INTO click_hourly (short_code, hour, humans, bots)
    SELECT short_code, date_trunc('hour', occurred_at, 'UTC'),
           count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot)
    FROM clicks GROUP BY 1, 2;
    DROP TABLE IF EXISTS pg_temp.click_combos;
    CREATE TEMP TABLE click_combos ON COMMIT DROP AS
    SELECT short_code, date_trunc('hour', occurred_at, 'UTC') AS hour, is_bot, country_code,
           device_type, browser, os, click_source_folded(traffic_source) AS traffic_source,
           count(*) AS clicks
    FROM clicks GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;
    PERFORM fill_click_breakdowns();
    DROP TABLE pg_temp.click_combos;
END
$$;
