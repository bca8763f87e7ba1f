//! The migration gate (observe the current attempt's Job, decide with the pure
//! `migration::decide`, apply: create the next Job, remove older ones).

use chrono::Utc;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, ListParams, Patch};
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use super::children::apply_params;
use super::Context;
use crate::crd::ShortenerStack;
use crate::error::Error;
use crate::events::EventReason;
use crate::migration::{self, JobSeen, Step};
use crate::resources::labels;
use crate::resources::migration_job::{
    job_finished_at, job_outcome, migration_job_for, migration_version, JobOutcome,
};
use crate::status::MigrationObservation;

/// The migration gate: reads the current attempt's Job (none once the status records a
/// success), lets `migration::decide` choose, and does what it chose: create a Job, or
/// remove the older attempts' Jobs once one succeeded.
pub(super) async fn ensure(
    stack: &ShortenerStack,
    ctx: &Context,
) -> Result<MigrationObservation, Error> {
    let ns = stack.namespace().ok_or(Error::MissingNamespace)?;
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let current = migration::current(stack);
    let seen = match (&current.job, current.succeeded) {
        (_, true) => JobSeen::Found(JobOutcome::Succeeded, None),
        (None, false) => JobSeen::NoAttempt,
        (Some(name), false) => match jobs.get_opt(name).await? {
            None => JobSeen::Missing,
            Some(job) => JobSeen::Found(job_outcome(&job), job_finished_at(&job)),
        },
    };
    let decision = migration::decide(stack, &seen, Utc::now());
    if let Some(failure) = &decision.new_failure {
        warn!(job = %failure.job, reason = %failure.reason, "migration Job failed");
        ctx.event(
            stack,
            EventReason::MigrationFailed,
            format!(
                "Job {} failed ({}): {} (attempt {} of {})",
                failure.job,
                failure.reason,
                failure.message,
                decision.status.attempts,
                migration::MAX_ATTEMPTS
            ),
        )
        .await;
    }
    match &decision.step {
        Step::Create { job, attempt } => {
            // A Job's pod template is immutable: every attempt is a new Job.
            jobs.patch(
                job,
                &apply_params(),
                &Patch::Apply(&migration_job_for(stack, job)),
            )
            .await?;
            info!(%job, attempt, version = migration_version(), "migration Job created");
            ctx.event(
                stack,
                EventReason::MigrationStarted,
                format!(
                    "Job {job} applies migration {} (attempt {attempt} of {})",
                    migration_version(),
                    migration::MAX_ATTEMPTS
                ),
            )
            .await;
        }
        Step::Succeeded if !current.succeeded => {
            remove_old_migration_jobs(stack, &jobs, decision.status.job.as_deref()).await;
        }
        _ => {}
    }
    Ok(decision)
}

/// Deletes the stack's migration Jobs other than `keep` (earlier attempts and targets).
/// Best effort: `ttlSecondsAfterFinished` removes whatever this misses.
async fn remove_old_migration_jobs(stack: &ShortenerStack, jobs: &Api<Job>, keep: Option<&str>) {
    let selector = format!(
        "{}={},{}=migration",
        labels::INSTANCE,
        stack.name_any(),
        labels::COMPONENT
    );
    let list = match jobs.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list,
        Err(e) => {
            warn!(error = %e, "cannot list old migration Jobs");
            return;
        }
    };
    for job in list.items {
        let name = job.name_any();
        if Some(name.as_str()) == keep {
            continue;
        }
        match jobs.delete(&name, &DeleteParams::background()).await {
            Ok(_) => info!(job = %name, "removed an old migration Job"),
            Err(e) => warn!(job = %name, error = %e, "cannot remove an old migration Job"),
        }
    }
}
