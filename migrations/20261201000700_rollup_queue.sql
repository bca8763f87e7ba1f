-- Clicks stored and not yet added to the rollups. The consumer's storing transaction
-- inserts one row per click its INSERT .. ON CONFLICT DO NOTHING really added; a rollup
-- pass takes rows (DELETE .. FOR UPDATE SKIP LOCKED, so replicas take disjoint rows),
-- adds them to the rollups and commits both together: each click is counted once.
-- It holds what the rollups need and nothing in clear that clicks does not: the visitor
-- is the day's keyed hash (NULL for bots and for days no longer counted).
CREATE TABLE click_rollup_queue (
    short_code     TEXT        NOT NULL,
    occurred_at    TIMESTAMPTZ NOT NULL,
    country_code   TEXT        NOT NULL,
    device_type    TEXT        NOT NULL,
    browser        TEXT        NOT NULL,
    os             TEXT        NOT NULL,
    is_bot         BOOLEAN     NOT NULL,
    traffic_source TEXT        NOT NULL,
    visitor        BYTEA,
    -- When it was stored: the age of the oldest row a pass takes is how far the rollups lag.
    queued_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A rebuild recounts the rollups from the raw clicks, queued ones included: the queue is
-- emptied in the same transaction so none of them is counted twice. link_visits is not
-- rebuilt (it outlives raw clicks), so the queued human clicks are added to it first.
CREATE OR REPLACE FUNCTION rebuild_click_rollups() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Writers wait while the counts are rebuilt: none is missed or counted twice.
    LOCK TABLE clicks IN SHARE MODE;
    LOCK TABLE click_rollup_queue IN ACCESS EXCLUSIVE MODE;
    INSERT INTO link_visits (short_code, human_visits)
    SELECT short_code, count(*) FROM click_rollup_queue WHERE NOT is_bot GROUP BY short_code
    ON CONFLICT (short_code) DO UPDATE
        SET human_visits = link_visits.human_visits + excluded.human_visits;
    TRUNCATE click_rollup_queue;
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
