-- A link change notification says what happened: `i:<code>` for a creation (only a cached
-- "no such code" is then stale) and `u:<code>` for an edit or delete (any cached copy is).
CREATE OR REPLACE FUNCTION links_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'links_changed',
        CASE TG_OP WHEN 'INSERT' THEN 'i:' ELSE 'u:' END || NEW.short_code
    );
    RETURN NULL;
END
$$;
