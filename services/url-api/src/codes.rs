//! Random short codes.

use rand::distr::Alphanumeric;
use rand::Rng;

/// Length of generated codes: 62^7 ≈ 3.5e12 possible codes.
pub const CODE_LEN: usize = 7;
/// Attempts before giving up when generated codes keep colliding.
pub const MAX_ATTEMPTS: usize = 5;

/// A uniformly random base62 code (`[A-Za-z0-9]`, thread-local CSPRNG).
pub fn generate() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(CODE_LEN)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_base62_of_fixed_length_and_distinct() {
        let codes: HashSet<String> = (0..10_000).map(|_| generate()).collect();
        assert_eq!(codes.len(), 10_000);
        assert!(codes
            .iter()
            .all(|c| c.len() == CODE_LEN && c.bytes().all(|b| b.is_ascii_alphanumeric())));
    }
}
