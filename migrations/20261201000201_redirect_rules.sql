-- Redirect rules of a link: an ordered JSON array of {long_url, device?, countries?,
-- languages?}; NULL when the link has none (the common case, which redirects unchanged).
ALTER TABLE links ADD COLUMN redirect_rules JSONB;

-- Which rule chose a click's target (1-based position in the link's rules); NULL when
-- none did.
ALTER TABLE clicks ADD COLUMN matched_rule SMALLINT;
