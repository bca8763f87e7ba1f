//! The Job that runs `url-api migrate` before any Deployment is rolled.
//!
//! The operator is built from the same repository as the images, so the newest migration
//! embedded in this build (`shortener_common::db::latest_migration_version()`) is the one
//! the images of its default tag carry. Which Job runs, and when a failed one is retried
//! under a new name, is `crate::migration`'s decision; the outcome is kept in the stack's
//! status, so a finished Job is removed after `TTL_SECONDS_AFTER_FINISHED`.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{env, labels, pod, Component};
use crate::crd::ShortenerStack;

/// Attempts before the Job is marked failed.
pub const BACKOFF_LIMIT: i32 = 3;
/// Upper bound on one Job's run time.
pub const ACTIVE_DEADLINE_SECONDS: i64 = 900;
/// A finished Job (and its pod's logs) stays a day for inspection.
pub const TTL_SECONDS_AFTER_FINISHED: i32 = 86_400;

/// The migration version this operator applies.
pub fn migration_version() -> i64 {
    shortener_common::db::latest_migration_version()
}

/// The first attempt's Job name, `<stack>-migrate-<version>-<hash8>`.
pub fn migration_job_name(stack: &ShortenerStack) -> String {
    crate::migration::job_name(stack, 1)
}

/// The migration Job named `name` (see `crate::migration::job_name`).
pub fn migration_job_for(stack: &ShortenerStack, name: &str) -> Job {
    let labels = labels::migration_labels(stack);
    let (tmp, tmp_mount) = pod::tmp_volume();
    let mut env = env::database_env(&stack.spec.database);
    env.push(EnvVar {
        name: "LOG_FORMAT".into(),
        value: Some("json".into()),
        ..EnvVar::default()
    });
    Job {
        metadata: labels::child_meta(stack, name.to_string(), labels.clone()),
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            ttl_seconds_after_finished: Some(TTL_SECONDS_AFTER_FINISHED),
            active_deadline_seconds: Some(ACTIVE_DEADLINE_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![Container {
                        name: "migrate".into(),
                        image: Some(Component::UrlApi.image(stack)),
                        image_pull_policy: Component::UrlApi
                            .pull_policy(stack)
                            .map(|p| p.as_str().to_string()),
                        command: Some(vec!["/usr/local/bin/url-api".into()]),
                        args: Some(vec!["migrate".into()]),
                        env: Some(env),
                        resources: stack.spec.url_api.resources.clone(),
                        security_context: Some(pod::container_security_context()),
                        volume_mounts: Some(vec![tmp_mount]),
                        ..Container::default()
                    }],
                    security_context: Some(pod::pod_security_context()),
                    volumes: Some(vec![tmp]),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

/// Where a migration Job stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    Running,
    Succeeded,
    Failed { reason: String, message: String },
}

/// When the Job finished (its `Complete`/`Failed` condition's transition time).
pub fn job_finished_at(job: &Job) -> Option<chrono::DateTime<chrono::Utc>> {
    let conditions = job.status.as_ref()?.conditions.as_deref()?;
    conditions
        .iter()
        .filter(|c| c.status == "True" && matches!(c.type_.as_str(), "Complete" | "Failed"))
        .find_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Reads the Job's `Complete`/`Failed` conditions.
pub fn job_outcome(job: &Job) -> JobOutcome {
    let status = job.status.as_ref();
    let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    for c in conditions.iter().filter(|c| c.status == "True") {
        match c.type_.as_str() {
            "Complete" | "SuccessCriteriaMet" => return JobOutcome::Succeeded,
            "Failed" | "FailureTarget" => {
                return JobOutcome::Failed {
                    reason: c.reason.clone().unwrap_or_else(|| "Failed".into()),
                    message: c
                        .message
                        .clone()
                        .unwrap_or_else(|| "the migration Job failed".into()),
                }
            }
            _ => {}
        }
    }
    JobOutcome::Running
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::stack;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};

    #[test]
    fn name_has_version_and_changes_with_image_or_database() {
        let mut s = stack();
        let name = migration_job_name(&s);
        let prefix = format!("demo-migrate-{}-", migration_version());
        assert!(name.starts_with(&prefix), "{name}");
        assert_eq!(name.len(), prefix.len() + 8);
        assert!(name.len() <= 63);
        assert_eq!(name, migration_job_name(&s));
        s.spec.url_api.replicas = 9;
        assert_eq!(name, migration_job_name(&s), "replicas do not matter");
        s.spec.image.tag = Some("0.2.0".into());
        let new_image = migration_job_name(&s);
        assert_ne!(name, new_image);
        s.spec.database.url_secret_ref.as_mut().unwrap().key = "other".into();
        assert_ne!(new_image, migration_job_name(&s));
    }

    #[test]
    fn job_runs_url_api_migrate_with_the_database_url() {
        let s = stack();
        let job = migration_job_for(&s, &migration_job_name(&s));
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(3));
        assert_eq!(spec.ttl_seconds_after_finished, Some(86_400));
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let c = &pod.containers[0];
        assert_eq!(
            c.image.as_deref(),
            Some("ghcr.io/shortener-stack/url-api:0.1.0")
        );
        assert_eq!(c.command.as_ref().unwrap(), &["/usr/local/bin/url-api"]);
        assert_eq!(c.args.as_ref().unwrap(), &["migrate"]);
        let env = c.env.as_ref().unwrap();
        assert_eq!(env[0].name, "DATABASE_URL");
        assert!(env[0].value_from.is_some());
        assert_eq!(
            job.metadata.labels.as_ref().unwrap()[labels::COMPONENT],
            "migration"
        );
        // The name carries the migration version, pinned by the test above; keep the
        // snapshot independent of new migrations.
        let mut job = job;
        job.metadata.name = Some("[migration-job-name]".into());
        insta::assert_yaml_snapshot!("migration_job", job);
    }

    fn job_with(type_: &str, reason: Option<&str>) -> Job {
        Job {
            status: Some(JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: type_.into(),
                    status: "True".into(),
                    reason: reason.map(Into::into),
                    message: Some("Job has reached the specified backoff limit".into()),
                    ..JobCondition::default()
                }]),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn outcome_follows_job_conditions() {
        assert_eq!(job_outcome(&Job::default()), JobOutcome::Running);
        assert_eq!(
            job_outcome(&job_with("Complete", None)),
            JobOutcome::Succeeded
        );
        assert_eq!(
            job_outcome(&job_with("Failed", Some("BackoffLimitExceeded"))),
            JobOutcome::Failed {
                reason: "BackoffLimitExceeded".into(),
                message: "Job has reached the specified backoff limit".into()
            }
        );
    }
}
