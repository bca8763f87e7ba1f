//! Applying one child (client required): read it, compare it with the desired object,
//! server-side apply it when it is missing, changed or drifted; delete an optional child
//! the spec turned off.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::FIELD_MANAGER;
use crate::crd::ShortenerStack;
use crate::drift;
use crate::error::Error;
use crate::resources::hash::{desired_hash_of, with_desired_hash};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Applied {
    Created,
    Updated,
    /// The desired object was unchanged but these live fields had drifted; applied back.
    Reverted(Vec<String>),
    Unchanged,
}

/// Reads the live child and server-side applies `desired` when it is missing, its hash
/// changed, or the live object drifted from it. Returns the live object after the call.
pub(super) async fn apply_child<K>(api: &Api<K>, desired: K) -> Result<(K, Applied), Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let desired = with_desired_hash(desired);
    let name = desired.name_any();
    let live = api.get_opt(&name).await?;
    let outcome = compare(&desired, live.as_ref());
    if let (Applied::Unchanged, Some(live)) = (&outcome, live) {
        return Ok((live, Applied::Unchanged));
    }
    let applied = api
        .patch(&name, &apply_params(), &Patch::Apply(&desired))
        .await?;
    Ok((applied, outcome))
}

/// What applying `desired` (stamped with its hash) over `live` would be: a creation, an
/// update (the desired object changed), a revert of the drifted fields, or nothing.
pub(super) fn compare<K: Resource + Serialize>(desired: &K, live: Option<&K>) -> Applied {
    let Some(live) = live else {
        return Applied::Created;
    };
    if desired_hash_of(live) != desired_hash_of(desired) {
        return Applied::Updated;
    }
    let drift = drift::drifted(
        &serde_json::to_value(desired).expect("objects serialize"),
        &serde_json::to_value(live).expect("objects serialize"),
    );
    if drift.is_empty() {
        Applied::Unchanged
    } else {
        Applied::Reverted(drift)
    }
}

/// Creates `desired` if it is missing; leaves a live object as it is.
pub(super) async fn create_child<K>(api: &Api<K>, desired: K) -> Result<(K, Applied), Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let desired = with_desired_hash(desired);
    if let Some(live) = api.get_opt(&desired.name_any()).await? {
        return Ok((live, Applied::Unchanged));
    }
    let applied = api
        .patch(
            &desired.name_any(),
            &apply_params(),
            &Patch::Apply(&desired),
        )
        .await?;
    Ok((applied, Applied::Created))
}

/// What a pass created and reverted, for its `Created` and `DriftReverted` events.
#[derive(Default)]
pub(super) struct Changes {
    /// `Kind name` of each child created.
    pub(super) created: Vec<String>,
    /// [`drift_note`] of each child whose hand edits were applied back.
    pub(super) reverted: Vec<String>,
    /// What happened to each Deployment that changed, for the `RolloutStarted` event.
    pub(super) rolled: Vec<String>,
}

impl Changes {
    /// A Deployment's apply: created or updated starts a rollout.
    pub(super) fn note_deployment(&mut self, live: &Deployment, applied: Applied) {
        match applied {
            Applied::Created => self
                .rolled
                .push(format!("created Deployment {}", live.name_any())),
            Applied::Updated => self
                .rolled
                .push(format!("updated Deployment {}", live.name_any())),
            Applied::Reverted(fields) => self.reverted.push(drift_note(live, &fields)),
            Applied::Unchanged => {}
        }
    }

    pub(super) fn note<K: Resource<DynamicType = ()>>(&mut self, live: &K, applied: Applied) {
        match applied {
            Applied::Created => self.created.push(format!(
                "{} {}",
                K::kind(&()),
                live.meta().name.as_deref().unwrap_or_default()
            )),
            Applied::Reverted(fields) => self.reverted.push(drift_note(live, &fields)),
            Applied::Updated | Applied::Unchanged => {}
        }
    }
}

/// An optional child: applied when the spec asks for it, deleted (if this stack owns it)
/// when the spec turned it off; looked for only when the spec changed.
pub(super) async fn apply_or_delete_child<K>(
    api: &Api<K>,
    desired: Option<K>,
    name: &str,
    stack: &ShortenerStack,
    spec_changed: bool,
    changes: &mut Changes,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    match desired {
        Some(desired) => {
            let (live, applied) = apply_child(api, desired).await?;
            changes.note(&live, applied);
        }
        None if spec_changed => {
            delete_owned_child(api, name, stack).await?;
        }
        None => {}
    }
    Ok(())
}

/// Deletes the child of that name if this stack owns it (an object someone else made under
/// the name is left alone). Returns whether it deleted one.
pub(super) async fn delete_owned_child<K>(
    api: &Api<K>,
    name: &str,
    stack: &ShortenerStack,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let Some(live) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let owned = live
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == stack.metadata.uid.as_ref());
    if owned {
        api.delete(name, &DeleteParams::default()).await?;
    }
    Ok(owned)
}

/// `Kind name: field, field` for the drift event.
pub(super) fn drift_note<K: Resource<DynamicType = ()>>(object: &K, fields: &[String]) -> String {
    format!(
        "{} {}: {}",
        K::kind(&()),
        object.meta().name.as_deref().unwrap_or_default(),
        fields.join(", ")
    )
}

pub(super) fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::configmap::config_map_for;
    use crate::resources::Component;
    use crate::test_support;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn desired() -> ConfigMap {
        with_desired_hash(config_map_for(&test_support::stack(), Component::UrlApi))
    }

    #[test]
    fn a_missing_child_is_created_an_identical_one_left_alone() {
        assert_eq!(compare(&desired(), None), Applied::Created);
        assert_eq!(compare(&desired(), Some(&desired())), Applied::Unchanged);
    }

    #[test]
    fn a_changed_desired_object_is_an_update() {
        let live = desired();
        let mut stack = test_support::stack();
        stack.spec.url_api.replicas += 1;
        stack.spec.kafka.topic = "renamed".into();
        let changed = with_desired_hash(config_map_for(&stack, Component::UrlApi));
        assert_ne!(desired_hash_of(&changed), desired_hash_of(&live));
        assert_eq!(compare(&changed, Some(&live)), Applied::Updated);
    }

    #[test]
    fn a_hand_edited_field_is_reverted_and_named_while_added_fields_are_not_ours() {
        let mut live = desired();
        let data = live.data.as_mut().expect("config data");
        let key = data.keys().next().expect("a config key").clone();
        data.insert(key.clone(), "hand edit".into());
        assert_eq!(
            compare(&desired(), Some(&live)),
            Applied::Reverted(vec![format!("data.{key}")])
        );

        let mut live = desired();
        live.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("team".into(), "payments".into());
        assert_eq!(compare(&desired(), Some(&live)), Applied::Unchanged);
    }
}
