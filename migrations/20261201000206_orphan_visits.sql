-- Orphan visits (Shlink's term): redirects of codes that name no live link, counted per
-- domain, kind and day. The codes themselves are never stored, so an attacker requesting
-- random codes adds nothing but counts.
CREATE TABLE orphan_visits (
    domain  TEXT   NOT NULL,
    kind    TEXT   NOT NULL,
    day     DATE   NOT NULL,
    visits  BIGINT NOT NULL,
    PRIMARY KEY (domain, day, kind)
);
