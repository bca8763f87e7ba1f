//! The migration gate: which migration Job to run, when to retry a failed one, and
//! whether the stack may roll its workloads. Pure: `decide` takes what the reconciler
//! observed (the previous `status.migration`, the current attempt's Job, the retry
//! annotation, the clock) and returns the next state and what to do.
//!
//! A target is the migration version plus a hash of what the migration depends on (the
//! url-api image and the database settings). Each target gets up to `MAX_ATTEMPTS` Jobs,
//! one at a time, `<stack>-migrate-<version>-<hash8>` where the hash of attempts after
//! the first also covers the attempt number (a Job's pod template is immutable, so a
//! retry is a new Job). After a failure the next attempt waits `retry_backoff`. After
//! the last attempt the stack stays on its old workloads until someone changes the
//! `RETRY_ANNOTATION` value, which starts one more attempt at once. The outcome is kept in
//! the status, so finished Jobs can be removed (`ttlSecondsAfterFinished`, and older
//! attempts are deleted once one succeeds).

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::crd::{MigrationFailure, MigrationStatus, ShortenerStack};
use crate::resources::hash::sha256_json;
use crate::resources::migration_job::{migration_version, JobOutcome};
use crate::resources::Component;

/// Annotation whose new value forces one more migration attempt now, e.g.
/// `kubectl annotate sst demo shortener.example.io/retry-migration="$(date +%s)" --overwrite`.
pub const RETRY_ANNOTATION: &str = "shortener.example.io/retry-migration";
/// Jobs per target before the operator stops retrying by itself.
pub const MAX_ATTEMPTS: i32 = 4;
const FIRST_RETRY: Duration = Duration::from_secs(60);
const LONGEST_RETRY: Duration = Duration::from_secs(600);

/// Wait after the `attempt`-th failure: 1, 2, 4 … minutes, at most 10.
pub fn retry_backoff(attempt: i32) -> Duration {
    let exp = (attempt.max(1) - 1).min(8) as u32;
    FIRST_RETRY.saturating_mul(1 << exp).min(LONGEST_RETRY)
}

/// `<version>-<hash8>` of the migration inputs.
pub fn target(stack: &ShortenerStack) -> String {
    let inputs = (
        migration_version(),
        Component::UrlApi.image(stack),
        &stack.spec.database,
    );
    format!("{}-{}", migration_version(), &sha256_json(&inputs)[..8])
}

/// Job name of `attempt` (1-based) for the stack's current target.
pub fn job_name(stack: &ShortenerStack, attempt: i32) -> String {
    let target = target(stack);
    if attempt <= 1 {
        return format!("{}-migrate-{target}", stack.name_any());
    }
    let (version, _) = target.split_once('-').expect("target has a version");
    let hash = sha256_json(&(target.as_str(), attempt));
    format!("{}-migrate-{version}-{}", stack.name_any(), &hash[..8])
}

/// What the reconciler saw of the current attempt's Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobSeen {
    /// No attempt made yet for this target.
    NoAttempt,
    /// The Job does not exist (never created, or removed after it finished).
    Missing,
    Found(JobOutcome, Option<DateTime<Utc>>),
}

/// What to do this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Create this Job (a first attempt or a retry).
    Create { job: String, attempt: i32 },
    /// A Job runs; wait for it.
    Wait,
    /// The last attempt failed; retry at this time.
    Backoff { retry_at: DateTime<Utc> },
    /// Every attempt failed; only the retry annotation starts another.
    GaveUp,
    /// The migration of this target succeeded: roll the workloads, delete older Jobs.
    Succeeded,
}

/// The gate's next state.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: MigrationStatus,
    pub step: Step,
    /// A failure first seen in this pass (for the Warning event).
    pub new_failure: Option<MigrationFailure>,
}

/// Where the gate stands for the stack's current target, from the previous status.
pub fn current(stack: &ShortenerStack) -> MigrationStatus {
    let target = target(stack);
    match stack.status.as_ref().and_then(|s| s.migration.clone()) {
        Some(m) if m.target == target => m,
        previous => MigrationStatus {
            target,
            attempts: 0,
            job: None,
            succeeded: false,
            failure: None,
            // A retry request made before the target changed is spent.
            retry_token: previous
                .and_then(|m| m.retry_token)
                .or_else(|| retry_token(stack)),
        },
    }
}

fn retry_token(stack: &ShortenerStack) -> Option<String> {
    stack.annotations().get(RETRY_ANNOTATION).cloned()
}

pub fn decide(stack: &ShortenerStack, seen: &JobSeen, now: DateTime<Utc>) -> Decision {
    let mut status = current(stack);
    let mut new_failure = None;
    if status.succeeded {
        return Decision {
            status,
            step: Step::Succeeded,
            new_failure,
        };
    }
    match seen {
        JobSeen::Found(JobOutcome::Succeeded, _) => {
            status.succeeded = true;
            status.failure = None;
            return Decision {
                status,
                step: Step::Succeeded,
                new_failure,
            };
        }
        JobSeen::Found(JobOutcome::Running, _) => {
            return Decision {
                status,
                step: Step::Wait,
                new_failure,
            }
        }
        JobSeen::Found(JobOutcome::Failed { reason, message }, finished) => {
            let job = status.job.clone().unwrap_or_default();
            if status.failure.as_ref().is_none_or(|f| f.job != job) {
                let failure = MigrationFailure {
                    job,
                    reason: reason.clone(),
                    message: message.clone(),
                    time: Time(finished.unwrap_or(now)),
                };
                status.failure = Some(failure.clone());
                new_failure = Some(failure);
            }
        }
        JobSeen::Missing if status.attempts > 0 && status.failure.is_none() => {
            // Removed before it finished (or before its outcome was recorded): run it again.
            return Decision {
                step: Step::Create {
                    job: status
                        .job
                        .clone()
                        .unwrap_or_else(|| job_name(stack, status.attempts)),
                    attempt: status.attempts,
                },
                status,
                new_failure,
            };
        }
        JobSeen::NoAttempt | JobSeen::Missing => {}
    }

    let token = retry_token(stack);
    let forced = token.is_some() && token != status.retry_token;
    let next = status.attempts + 1;
    let step = if status.attempts == 0 || forced {
        Step::Create {
            job: job_name(stack, next),
            attempt: next,
        }
    } else if status.attempts >= MAX_ATTEMPTS {
        Step::GaveUp
    } else {
        let failed_at = status.failure.as_ref().map(|f| f.time.0).unwrap_or(now);
        let retry_at = failed_at
            + chrono::Duration::from_std(retry_backoff(status.attempts))
                .expect("backoff fits chrono");
        if now >= retry_at {
            Step::Create {
                job: job_name(stack, next),
                attempt: next,
            }
        } else {
            Step::Backoff { retry_at }
        }
    };
    if let Step::Create { job, attempt } = &step {
        status.attempts = *attempt;
        status.job = Some(job.clone());
        status.retry_token = token;
    }
    Decision {
        status,
        step,
        new_failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ShortenerStackStatus;
    use crate::test_support::stack;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap() + chrono::Duration::minutes(min)
    }

    fn failed() -> JobSeen {
        JobSeen::Found(
            JobOutcome::Failed {
                reason: "BackoffLimitExceeded".into(),
                message: "Job has reached the specified backoff limit".into(),
            },
            Some(t(0)),
        )
    }

    fn with(mut s: ShortenerStack, m: MigrationStatus) -> ShortenerStack {
        s.status = Some(ShortenerStackStatus {
            migration: Some(m),
            ..ShortenerStackStatus::default()
        });
        s
    }

    #[test]
    fn names_fit_a_label_and_differ_per_attempt() {
        let mut s = stack();
        s.metadata.name = Some("x".repeat(30));
        let names: Vec<String> = (1..=MAX_ATTEMPTS).map(|a| job_name(&s, a)).collect();
        for n in &names {
            assert!(n.len() <= 63, "{n}");
        }
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        assert_eq!(job_name(&s, 1), job_name(&s, 1));
    }

    #[test]
    fn failure_backs_off_then_retries_with_a_new_job_then_gives_up() {
        let s = stack();
        let first = decide(&s, &JobSeen::NoAttempt, t(0));
        assert_eq!(
            first.step,
            Step::Create {
                job: job_name(&s, 1),
                attempt: 1
            }
        );
        let s = with(s, first.status);
        let d = decide(&s, &failed(), t(0));
        assert_eq!(
            d.new_failure.as_ref().unwrap().reason,
            "BackoffLimitExceeded"
        );
        assert_eq!(d.step, Step::Backoff { retry_at: t(1) });
        let s = with(s, d.status);
        // Seen again: no new failure event, still waiting.
        let d = decide(&s, &failed(), t(0));
        assert!(d.new_failure.is_none());
        let d = decide(&s, &failed(), t(1));
        assert_eq!(
            d.step,
            Step::Create {
                job: job_name(&s, 2),
                attempt: 2
            }
        );
        assert!(d.status.failure.is_some(), "the last failure stays visible");
        let mut s = with(s, d.status);
        // Attempts 2 .. MAX fail too; each retry is due (the failure was long ago).
        for _ in 2..MAX_ATTEMPTS {
            let d = decide(&s, &failed(), t(100));
            assert!(matches!(d.step, Step::Create { .. }), "{:?}", d.step);
            s = with(s, d.status);
        }
        let d = decide(&s, &failed(), t(100));
        assert_eq!(d.step, Step::GaveUp);
        assert_eq!(d.status.attempts, MAX_ATTEMPTS);
        let mut s = with(s, d.status);
        assert_eq!(decide(&s, &failed(), t(300)).step, Step::GaveUp);

        // The annotation forces one more attempt at once, once per new value.
        s.metadata.annotations = Some([(RETRY_ANNOTATION.to_string(), "1".to_string())].into());
        let d = decide(&s, &failed(), t(300));
        assert_eq!(
            d.step,
            Step::Create {
                job: job_name(&s, MAX_ATTEMPTS + 1),
                attempt: MAX_ATTEMPTS + 1
            }
        );
        let s = with(s, d.status);
        assert_eq!(decide(&s, &failed(), t(301)).step, Step::GaveUp);
    }

    #[test]
    fn success_is_remembered_and_a_new_target_starts_over() {
        let s = stack();
        let d = decide(&s, &JobSeen::NoAttempt, t(0));
        let s = with(s, d.status);
        let d = decide(&s, &JobSeen::Found(JobOutcome::Succeeded, None), t(1));
        assert_eq!(d.step, Step::Succeeded);
        let mut s = with(s, d.status);
        // The Job is gone (TTL): still succeeded, nothing to create.
        assert_eq!(decide(&s, &JobSeen::Missing, t(2)).step, Step::Succeeded);
        s.spec.image.tag = Some("0.2.0".into());
        let d = decide(&s, &JobSeen::NoAttempt, t(3));
        assert_eq!(
            d.step,
            Step::Create {
                job: job_name(&s, 1),
                attempt: 1
            }
        );
    }
}
