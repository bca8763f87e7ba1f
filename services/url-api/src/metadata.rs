//! Checks of a link's descriptive fields (title, description, tags), its visit limit, and
//! the UTM parameters settable on create. Pure functions; each error names its field's
//! stable error code.

use serde::Deserialize;
use url::Url;
use utoipa::ToSchema;

pub const TITLE_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 1000;
pub const MAX_TAGS: usize = 20;
pub const TAG_MAX_CHARS: usize = 50;
pub const UTM_MAX_CHARS: usize = 200;
pub const MAX_VISITS_LIMIT: i64 = 1_000_000_000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FieldError {
    #[error("title must be at most {TITLE_MAX_CHARS} characters without control characters")]
    Title,
    #[error(
        "description must be at most {DESCRIPTION_MAX_CHARS} characters without control \
         characters other than newlines and tabs"
    )]
    Description,
    #[error("at most {MAX_TAGS} tags")]
    TooManyTags,
    #[error(
        "tag {0:?} must be 1 to {TAG_MAX_CHARS} letters, digits, '-', '_' or '.' \
         (compared lowercased)"
    )]
    Tag(String),
    #[error("utm_{0} must be 1 to {UTM_MAX_CHARS} characters without control characters")]
    Utm(&'static str),
    #[error("max_visits must be between 1 and {MAX_VISITS_LIMIT}")]
    MaxVisits,
    #[error("expired_url: {0}")]
    ExpiredUrl(String),
    #[error(
        "password must be {} to {} characters",
        crate::password::MIN_CHARS,
        crate::password::MAX_CHARS
    )]
    Password,
}

impl FieldError {
    /// The stable `error.code` of the JSON error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Title => "invalid_title",
            Self::Description => "invalid_description",
            Self::TooManyTags | Self::Tag(_) => "invalid_tags",
            Self::Utm(_) => "invalid_utm",
            Self::MaxVisits => "invalid_max_visits",
            Self::ExpiredUrl(_) => "invalid_expired_url",
            Self::Password => "invalid_password",
        }
    }
}

/// A trimmed title; None for an empty one.
pub fn title(text: &str) -> Result<Option<String>, FieldError> {
    let t = text.trim();
    if t.chars().count() > TITLE_MAX_CHARS || t.chars().any(char::is_control) {
        return Err(FieldError::Title);
    }
    Ok((!t.is_empty()).then(|| t.to_string()))
}

/// A trimmed description; None for an empty one.
pub fn description(text: &str) -> Result<Option<String>, FieldError> {
    let t = text.trim();
    if t.chars().count() > DESCRIPTION_MAX_CHARS
        || t.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(FieldError::Description);
    }
    Ok((!t.is_empty()).then(|| t.to_string()))
}

pub fn max_visits(n: i64) -> Result<i64, FieldError> {
    if (1..=MAX_VISITS_LIMIT).contains(&n) {
        Ok(n)
    } else {
        Err(FieldError::MaxVisits)
    }
}

/// Tags trimmed, lowercased and deduplicated, in their first order.
pub fn tags(input: &[String]) -> Result<Vec<String>, FieldError> {
    if input.len() > MAX_TAGS {
        return Err(FieldError::TooManyTags);
    }
    let mut out: Vec<String> = Vec::with_capacity(input.len());
    for raw in input {
        let t = raw.trim().to_lowercase();
        let len = t.chars().count();
        if !(1..=TAG_MAX_CHARS).contains(&len)
            || !t
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(FieldError::Tag(raw.clone()));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// UTM parameters added to the destination's query (replacing ones of the same name).
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Utm {
    pub source: Option<String>,
    pub medium: Option<String>,
    pub campaign: Option<String>,
    pub term: Option<String>,
    pub content: Option<String>,
}

impl Utm {
    fn pairs(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("source", self.source.as_deref()),
            ("medium", self.medium.as_deref()),
            ("campaign", self.campaign.as_deref()),
            ("term", self.term.as_deref()),
            ("content", self.content.as_deref()),
        ]
    }

    /// `url` with these parameters set.
    pub fn apply(&self, url: &Url) -> Result<Url, FieldError> {
        let given: Vec<(String, &str)> = self
            .pairs()
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| (name, v)))
            .map(|(name, v)| {
                let v = v.trim();
                let n = v.chars().count();
                if !(1..=UTM_MAX_CHARS).contains(&n) || v.chars().any(char::is_control) {
                    return Err(FieldError::Utm(name));
                }
                Ok((format!("utm_{name}"), v))
            })
            .collect::<Result<_, _>>()?;
        if given.is_empty() {
            return Ok(url.clone());
        }
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !given.iter().any(|(g, _)| g == k))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut out = url.clone();
        out.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .extend_pairs(given);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_and_descriptions() {
        assert_eq!(title("  Hello  ").unwrap().as_deref(), Some("Hello"));
        assert_eq!(title("   ").unwrap(), None);
        assert_eq!(title(&"x".repeat(201)), Err(FieldError::Title));
        assert_eq!(title("a\u{0}b"), Err(FieldError::Title));
        assert_eq!(
            description("line 1\nline 2\t.").unwrap().as_deref(),
            Some("line 1\nline 2\t.")
        );
        assert_eq!(description("bell\u{7}"), Err(FieldError::Description));
        assert_eq!(description(&"é".repeat(1001)), Err(FieldError::Description));
    }

    #[test]
    fn tags_are_normalized_and_checked() {
        let t = |v: &[&str]| tags(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            t(&[" Launch ", "launch", "q3.2026", "früh"]).unwrap(),
            ["launch", "q3.2026", "früh"]
        );
        assert!(t(&[]).unwrap().is_empty());
        assert_eq!(t(&[""]), Err(FieldError::Tag("".into())));
        assert_eq!(t(&["a,b"]), Err(FieldError::Tag("a,b".into())));
        assert_eq!(t(&["two words"]), Err(FieldError::Tag("two words".into())));
        assert!(t(&[&"x".repeat(51)]).is_err());
        let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
        assert_eq!(tags(&many), Err(FieldError::TooManyTags));
        assert_eq!(FieldError::TooManyTags.code(), "invalid_tags");
    }

    #[test]
    fn utm_parameters_replace_existing_ones() {
        let url = Url::parse("https://example.com/p?utm_source=old&x=1#top").unwrap();
        let utm = Utm {
            source: Some("news letter".into()),
            campaign: Some("spring".into()),
            ..Utm::default()
        };
        assert_eq!(
            utm.apply(&url).unwrap().as_str(),
            "https://example.com/p?x=1&utm_source=news+letter&utm_campaign=spring#top"
        );
        assert_eq!(Utm::default().apply(&url).unwrap(), url);
        let bad = Utm {
            medium: Some(" ".into()),
            ..Utm::default()
        };
        assert_eq!(bad.apply(&url), Err(FieldError::Utm("medium")));
    }
}
