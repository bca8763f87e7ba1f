//! Leader election on a `coordination.k8s.io/v1` Lease, so only one of several operator
//! replicas reconciles. (kube-runtime 2 has no leader election of its own.)
//!
//! Every write is a `replace` carrying the `resourceVersion` that was read, so two
//! candidates racing for an expired lease cannot both win: the loser gets 409 Conflict.
//! Expiry is judged by the local clock from the moment this process last saw the lease
//! record change (as client-go does), so clock skew between nodes does not matter.
//!
//! A leader that stops (SIGTERM on a rolling update) releases the Lease, as client-go's
//! `ReleaseOnCancel` does: it clears the holder, so a standby takes over at its next retry
//! instead of waiting out the lease duration. Leadership is reported in the
//! `shortener_operator_leader` gauge and a log line on every change; it never affects
//! readiness (a standby is healthy).

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use prometheus_client::metrics::gauge::Gauge;
use tracing::{info, warn};

#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// This candidate's id (the pod name).
    pub identity: String,
    /// How long a lease holds without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_period: Duration,
    /// How often a candidate retries.
    pub retry_period: Duration,
}

impl LeaseSettings {
    pub fn new(name: String, namespace: String, identity: String) -> Self {
        Self {
            name,
            namespace,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(5),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The last lease record seen and when (local monotonic clock) it last changed.
#[derive(Debug)]
struct Observed {
    record: (Option<String>, Option<MicroTime>),
    since: Instant,
}

pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
    observed: Mutex<Option<Observed>>,
    /// 1 while this replica leads.
    leading: Gauge,
}

/// How `run_as_leader` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership<T> {
    /// Shut down before winning the election.
    NeverLed,
    /// Led, finished its work (with this result) and handed the Lease back.
    Released(T),
    /// Another candidate took the Lease, or renewals failed: the work was stopped.
    Lost,
}

impl LeaderElector {
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: Mutex::new(None),
            leading: Gauge::default(),
        }
    }

    /// Reports leadership in `gauge` (the `shortener_operator_leader` metric).
    pub fn with_gauge(mut self, gauge: Gauge) -> Self {
        self.leading = gauge;
        self
    }

    pub fn identity(&self) -> &str {
        &self.settings.identity
    }

    fn spec(&self, acquire_time: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        let now = MicroTime(Utc::now());
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(self.settings.lease_duration.as_secs() as i32),
            acquire_time: Some(acquire_time.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Whether the holder's record has been unchanged for longer than the lease duration.
    fn expired(&self, spec: &LeaseSpec) -> bool {
        let record = (spec.holder_identity.clone(), spec.renew_time.clone());
        let mut observed = self.observed.lock().expect("observed lock");
        match observed.as_ref() {
            Some(o) if o.record == record => {
                let duration = spec
                    .lease_duration_seconds
                    .map(|s| Duration::from_secs(s.max(0) as u64))
                    .unwrap_or(self.settings.lease_duration);
                o.since.elapsed() > duration
            }
            _ => {
                *observed = Some(Observed {
                    record,
                    since: Instant::now(),
                });
                false
            }
        }
    }

    /// One acquire-or-renew attempt. `Ok(true)`: this candidate holds the lease now.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let name = &self.settings.name;
        let Some(lease) = self.api.get_opt(name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let mine = spec.holder_identity.as_deref() == Some(self.settings.identity.as_str());
        let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        if !mine && !free && !self.expired(&spec) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let renewed = Lease {
            metadata: lease.metadata.clone(),
            spec: Some(self.spec(
                if mine {
                    spec.acquire_time.clone()
                } else {
                    None
                },
                transitions,
            )),
        };
        match self
            .api
            .replace(name, &PostParams::default(), &renewed)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate is the leader.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    self.leading.set(1);
                    info!(lease = %self.settings.name, identity = %self.settings.identity, leader = true, "became leader");
                    return;
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "leader election request failed"),
            }
            tokio::time::sleep(self.settings.retry_period).await;
        }
    }

    /// Renews the lease; returns once leadership is lost (another holder took it, or no
    /// renewal succeeded within the lease duration). The caller must stop reconciling.
    ///
    /// Leadership is given up a renew period before the lease could expire for the other
    /// candidates, and a renewal request that hangs counts as failed at that point: an
    /// unanswered API call must not keep this replica reconciling after another took over.
    pub async fn hold(&self) {
        self.renew_until_lost().await;
        self.leading.set(0);
        warn!(lease = %self.settings.name, identity = %self.settings.identity, leader = false, "lost leadership");
    }

    async fn renew_until_lost(&self) {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.settings.renew_period).await;
            let deadline = self
                .settings
                .lease_duration
                .saturating_sub(last_renewal.elapsed() + self.settings.renew_period);
            if deadline.is_zero() {
                warn!("no lease renewal within the lease duration");
                return;
            }
            // The record written carries a renew time taken before the request is sent.
            let started = Instant::now();
            match tokio::time::timeout(deadline, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => last_renewal = started,
                Ok(Ok(false)) => {
                    warn!("lease taken by another candidate");
                    return;
                }
                Ok(Err(e)) => warn!(error = %e, "lease renewal failed"),
                Err(_) => {
                    warn!(timeout = ?deadline, "lease renewal got no answer in time");
                    return;
                }
            }
        }
    }
}

impl LeaderElector {
    /// Hands the Lease back if this candidate holds it: no holder, a one-second duration
    /// (what client-go writes), transitions kept. The write carries the resourceVersion
    /// read, so a Lease another candidate already took is left alone.
    pub async fn release(&self) -> Result<bool, kube::Error> {
        self.leading.set(0);
        let Some(lease) = self.api.get_opt(&self.settings.name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(false);
        }
        let released = Lease {
            metadata: lease.metadata.clone(),
            spec: Some(LeaseSpec {
                holder_identity: None,
                lease_duration_seconds: Some(1),
                acquire_time: None,
                renew_time: Some(MicroTime(Utc::now())),
                lease_transitions: spec.lease_transitions,
                ..LeaseSpec::default()
            }),
        };
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &released)
            .await
        {
            Ok(_) => {
                info!(lease = %self.settings.name, identity = %self.settings.identity, leader = false, "released the leader lease");
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Runs `work` while this candidate leads: waits for the Lease (giving up when `shutdown`
/// fires first), runs `work` until it ends by itself (the controller stops on SIGTERM),
/// then releases the Lease so a standby takes over at once. If leadership is lost
/// meanwhile, `work` is dropped at once: two reconcilers must never overlap.
pub async fn run_as_leader<S, W, T>(elector: &LeaderElector, shutdown: S, work: W) -> Leadership<T>
where
    S: Future<Output = ()>,
    W: Future<Output = T>,
{
    tokio::select! {
        _ = elector.acquire() => {}
        _ = shutdown => return Leadership::NeverLed,
    }
    let result = tokio::select! {
        result = work => result,
        _ = elector.hold() => return Leadership::Lost,
    };
    if let Err(e) = elector.release().await {
        // The successor then waits out the lease duration; nothing else is at stake.
        warn!(error = %e, "cannot release the leader lease");
    }
    Leadership::Released(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use tower_test::mock;

    #[tokio::test]
    async fn hold_gives_up_when_the_api_server_never_answers() {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let elector = LeaderElector::new(
            Client::new(service, "default"),
            LeaseSettings {
                lease_duration: Duration::from_millis(900),
                renew_period: Duration::from_millis(300),
                ..LeaseSettings::new("operator".into(), "ops".into(), "pod-a".into())
            },
        );
        let unanswered = async {
            let (request, _never_answered) = handle.next_request().await.expect("a renewal");
            assert_eq!(request.method(), http::Method::GET);
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = elector.hold() => {}
            _ = unanswered => unreachable!(),
            _ = tokio::time::sleep(Duration::from_secs(30)) => {
                panic!("hold() still claims the lease while its renewal hangs")
            }
        }
    }
}
