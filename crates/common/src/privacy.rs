//! Defaults of the click data's privacy settings, shared by the consumer (its flags) and the
//! operator (the ShortenerStack fields that set them), so both always agree.

/// Days raw clicks are kept (`CLICK_RETENTION_DAYS`); rollups are kept regardless.
pub const DEFAULT_CLICK_RETENTION_DAYS: u32 = 400;

/// Shortest retention accepted (the current month's partition is always kept): raw clicks
/// still answer the minute series of recent hours.
pub const MIN_CLICK_RETENTION_DAYS: u32 = 1;

/// Client addresses are stored anonymized unless told otherwise (`ANONYMIZE_IPS`).
pub const DEFAULT_ANONYMIZE_IPS: bool = true;
