//! The controller's shared state: the client, the topic manager, the recorder and the
//! metrics, and what is remembered per stack between passes (the error backoff, the Kafka
//! admin client, whether PodMonitors were found unavailable).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tracing::warn;

use super::FIELD_MANAGER;
use crate::autoscaling::Autoscaler;
use crate::crd::ShortenerStack;
use crate::events::{EventReason, Note};
use crate::metrics::Metrics;
use crate::topic::{KafkaConnection, TopicAdmin, TopicError, TopicManager};

const MIN_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Shared state of the controller.
pub struct Context {
    pub client: Client,
    pub topics: Arc<dyn TopicManager>,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Lag-based consumer autoscaling; `None` leaves the consumer's replicas to the spec
    /// bounds (the controller sets it, see `docs/autoscaling.md`).
    pub autoscaler: Option<Autoscaler>,
    /// The watched ShortenerStacks as the controller's reflector holds them (topic
    /// ownership between stacks reads them here, costing no request).
    pub stacks: Store<ShortenerStack>,
    /// Consecutive failures per stack, for the error backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// One Kafka admin client per stack, reused across passes while the connection
    /// settings (Secret material included, by fingerprint) stay the same.
    admins: Mutex<HashMap<String, CachedAdmin>>,
    /// Stacks whose PodMonitors the cluster could not take (no CRD), so the Warning Event
    /// goes out when that starts, not on every pass.
    pod_monitors_unavailable: Mutex<HashSet<String>>,
}

/// An admin client and the fingerprint of the settings it was built with.
type CachedAdmin = (String, Arc<dyn TopicAdmin>);

impl Context {
    pub fn new(client: Client, topics: Arc<dyn TopicManager>, metrics: Metrics) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            topics,
            metrics,
            autoscaler: None,
            stacks: stack_store(std::iter::empty()),
            failures: Mutex::default(),
            admins: Mutex::default(),
            pod_monitors_unavailable: Mutex::default(),
        }
    }

    /// The stack's admin client: the cached one while `connection` is unchanged, else a
    /// new one (the old one is dropped, closing its connections).
    pub(super) fn topic_admin(
        &self,
        stack: &ShortenerStack,
        connection: &KafkaConnection,
    ) -> Result<Arc<dyn TopicAdmin>, TopicError> {
        let key = Self::key(stack);
        let fingerprint = connection.fingerprint();
        let mut admins = self.admins.lock().expect("admins lock");
        if let Some((known, admin)) = admins.get(&key) {
            if *known == fingerprint {
                return Ok(admin.clone());
            }
        }
        let admin = self.topics.connect(connection)?;
        admins.insert(key, (fingerprint, admin.clone()));
        Ok(admin)
    }

    /// Drops a deleted stack's admin client (and what was remembered about it).
    pub(super) fn forget_stack(&self, stack: &ShortenerStack) {
        self.admins
            .lock()
            .expect("admins lock")
            .remove(&Self::key(stack));
        self.pod_monitors_available(stack, true);
    }

    /// Records whether the cluster took the stack's PodMonitors; true when they just
    /// became unavailable (the moment to say so).
    pub(super) fn pod_monitors_available(&self, stack: &ShortenerStack, available: bool) -> bool {
        let mut unavailable = self
            .pod_monitors_unavailable
            .lock()
            .expect("pod monitor lock");
        if available {
            unavailable.remove(&Self::key(stack));
            false
        } else {
            unavailable.insert(Self::key(stack))
        }
    }

    fn key(stack: &ShortenerStack) -> String {
        format!(
            "{}/{}",
            stack.namespace().unwrap_or_default(),
            stack.name_any()
        )
    }

    /// Backoff for the next retry after a failure: 5 s, 10 s, 20 s … capped at 5 min.
    pub(super) fn next_backoff(&self, stack: &ShortenerStack) -> Duration {
        let mut failures = self.failures.lock().expect("failures lock");
        let n = failures.entry(Self::key(stack)).or_insert(0);
        *n = n.saturating_add(1);
        let exp = (*n - 1).min(16);
        MIN_BACKOFF.saturating_mul(1u32 << exp).min(MAX_BACKOFF)
    }

    pub(super) fn reset_backoff(&self, stack: &ShortenerStack) {
        self.failures
            .lock()
            .expect("failures lock")
            .remove(&Self::key(stack));
    }

    /// Publishes an event on the stack. Events are informational: a failure is logged,
    /// never fails the reconcile.
    pub(super) async fn event(&self, stack: &ShortenerStack, reason: EventReason, note: String) {
        let event = Note { reason, note }.event();
        if let Err(e) = self.recorder.publish(&event, &stack.object_ref(&())).await {
            warn!(error = %e, %reason, "cannot publish event");
        }
    }
}

/// A store holding `stacks`, as the controller's reflector would (for a `Context` outside
/// the controller: tests, the bench, one-off commands).
pub fn stack_store(stacks: impl IntoIterator<Item = ShortenerStack>) -> Store<ShortenerStack> {
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for stack in stacks {
        writer.apply_watcher_event(&watcher::Event::InitApply(stack));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}
