//! Which stack manages a topic that several stacks name on the same brokers. As in
//! Strimzi's topic operator, the oldest resource wins (creation time, then namespace and
//! name to break ties); the others get a `ResourceConflict` condition and neither create,
//! alter nor delete the topic. Pure: the reconciler lists the stacks and asks.

use std::collections::BTreeSet;

use kube::ResourceExt;

use crate::crd::ShortenerStack;

/// Another stack manages (some of) the topics this one names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// `namespace/name` of the managing stack.
    pub owner: String,
    /// The topics both name.
    pub topics: Vec<String>,
}

impl Conflict {
    pub fn message(&self, bootstrap_servers: &str) -> String {
        format!(
            "topic {} on {bootstrap_servers} is managed by ShortenerStack {}, created earlier; \
             this stack does not create, alter or delete it: give it other topic names (a new \
             stack) or delete one of the two",
            self.topics.join(", "),
            self.owner
        )
    }
}

/// The brokers a bootstrap list names, normalised (lower case, no blanks, sorted).
pub fn brokers(bootstrap_servers: &str) -> BTreeSet<String> {
    bootstrap_servers
        .split(',')
        .map(|b| b.trim().to_ascii_lowercase())
        .filter(|b| !b.is_empty())
        .collect()
}

/// The topics a stack names: the clicks topic and its dead-letter topic.
pub fn topics(stack: &ShortenerStack) -> BTreeSet<String> {
    [stack.spec.kafka.topic.clone(), stack.spec.kafka.dlq_topic()]
        .into_iter()
        .collect()
}

/// Sort key: older first; ties by namespace and name (both stable).
fn seniority(stack: &ShortenerStack) -> (Option<chrono::DateTime<chrono::Utc>>, String, String) {
    (
        stack.metadata.creation_timestamp.as_ref().map(|t| t.0),
        stack.namespace().unwrap_or_default(),
        stack.name_any(),
    )
}

/// The oldest other stack in `stacks` that names one of `stack`'s topics on one of its
/// brokers and is older than `stack`; `None` when `stack` manages its topics. Brokers
/// named differently (an IP and a DNS name for one broker) are not recognised as the same.
pub fn conflict(stack: &ShortenerStack, stacks: &[ShortenerStack]) -> Option<Conflict> {
    let mine = topics(stack);
    let my_brokers = brokers(&stack.spec.kafka.bootstrap_servers);
    let my_key = seniority(stack);
    let older = |other: &ShortenerStack| {
        let (theirs, ours) = (seniority(other), &my_key);
        // A missing creation time (not stored yet) counts as newest.
        match (&theirs.0, &ours.0) {
            (Some(a), Some(b)) if a != b => a < b,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            _ => (&theirs.1, &theirs.2) < (&ours.1, &ours.2),
        }
    };
    stacks
        .iter()
        .filter(|other| {
            (other.namespace(), other.name_any()) != (stack.namespace(), stack.name_any())
        })
        .filter(|other| !brokers(&other.spec.kafka.bootstrap_servers).is_disjoint(&my_brokers))
        .filter(|other| older(other))
        .filter_map(|other| {
            let shared: Vec<String> = topics(other).intersection(&mine).cloned().collect();
            (!shared.is_empty()).then(|| (seniority(other), other, shared))
        })
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, other, shared)| Conflict {
            owner: format!(
                "{}/{}",
                other.namespace().unwrap_or_default(),
                other.name_any()
            ),
            topics: shared,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn stack(ns: &str, name: &str, minute: u32, brokers: &str, topic: &str) -> ShortenerStack {
        let mut s: ShortenerStack = serde_json::from_value(serde_json::json!({
            "apiVersion": "shortener.example.io/v1alpha1",
            "kind": "ShortenerStack",
            "metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}")},
            "spec": {
                "kafka": {"bootstrapServers": brokers, "topic": topic},
                "database": {"urlSecretRef": {"name": "db", "key": "url"}}
            }
        }))
        .unwrap();
        s.metadata.creation_timestamp = Some(Time(
            chrono::DateTime::parse_from_rfc3339(&format!("2026-01-01T00:{minute:02}:00Z"))
                .unwrap()
                .into(),
        ));
        s
    }

    #[test]
    fn the_oldest_stack_on_the_same_brokers_wins() {
        let old = stack("a", "old", 1, "kafka:9092", "clicks");
        let new = stack("b", "new", 2, "KAFKA:9092, other:9092", "clicks");
        let all = [old.clone(), new.clone()];
        assert_eq!(conflict(&old, &all), None);
        let c = conflict(&new, &all).expect("the younger one loses");
        assert_eq!(c.owner, "a/old");
        assert_eq!(c.topics, ["clicks", "clicks.dlq"]);
        assert!(c
            .message("kafka:9092")
            .contains("managed by ShortenerStack a/old"));
    }

    #[test]
    fn other_brokers_or_other_topics_do_not_conflict() {
        let old = stack("a", "old", 1, "kafka:9092", "clicks");
        let elsewhere = stack("b", "x", 2, "kafka-2:9092", "clicks");
        let other_topic = stack("b", "y", 2, "kafka:9092", "visits");
        let all = [old, elsewhere.clone(), other_topic.clone()];
        assert_eq!(conflict(&elsewhere, &all), None);
        assert_eq!(conflict(&other_topic, &all), None);
    }

    #[test]
    fn a_topic_named_as_another_stacks_dlq_conflicts_too() {
        let old = stack("a", "old", 1, "kafka:9092", "clicks");
        let new = stack("a", "new", 2, "kafka:9092", "clicks.dlq");
        let c = conflict(&new, &[old, new.clone()]).unwrap();
        assert_eq!(c.topics, ["clicks.dlq"]);
    }

    #[test]
    fn ties_on_creation_time_go_by_namespace_then_name() {
        let a = stack("a", "z", 1, "kafka:9092", "clicks");
        let b = stack("b", "a", 1, "kafka:9092", "clicks");
        let all = [a.clone(), b.clone()];
        assert_eq!(conflict(&a, &all), None);
        assert_eq!(conflict(&b, &all).unwrap().owner, "a/z");
    }
}
