//! `app.kubernetes.io/*` labels and the owner reference every child carries.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use super::Component;
use crate::crd::ShortenerStack;

pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const PART_OF: &str = "app.kubernetes.io/part-of";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const VERSION: &str = "app.kubernetes.io/version";

pub const PART_OF_VALUE: &str = "shortener-stack";
pub const MANAGER: &str = "shortener-operator";

/// Labels that select a component's pods. They never change for the life of the
/// Deployment (a Deployment's selector is immutable), so no version in here.
pub fn selector(stack: &ShortenerStack, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_string(), component.name().to_string()),
        (INSTANCE.to_string(), stack.name_any()),
    ])
}

/// Every label of a component's objects: the selector plus role, ownership and version.
pub fn labels(stack: &ShortenerStack, component: Component) -> BTreeMap<String, String> {
    let mut labels = selector(stack, component);
    labels.insert(COMPONENT.into(), component.role().into());
    labels.insert(PART_OF.into(), PART_OF_VALUE.into());
    labels.insert(MANAGED_BY.into(), MANAGER.into());
    labels.insert(VERSION.into(), label_value(&component.image_tag(stack)));
    labels
}

/// Labels of the migration Job (it runs the url-api image).
pub fn migration_labels(stack: &ShortenerStack) -> BTreeMap<String, String> {
    let mut labels = labels(stack, Component::UrlApi);
    labels.insert(COMPONENT.into(), "migration".into());
    labels
}

/// Owner reference with `controller: true`: deleting the stack garbage-collects the child,
/// and the controller maps child events back to the stack.
pub fn owner_reference(stack: &ShortenerStack) -> OwnerReference {
    stack
        .controller_owner_ref(&())
        .expect("a ShortenerStack read from the API has a name and uid")
}

/// Metadata of a child object in the stack's namespace.
pub fn child_meta(
    stack: &ShortenerStack,
    name: String,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: stack.namespace(),
        labels: Some(labels),
        owner_references: Some(vec![owner_reference(stack)]),
        ..ObjectMeta::default()
    }
}

/// A label value: at most 63 characters of `[A-Za-z0-9._-]`, starting and ending
/// alphanumeric (image tags may contain `+`, e.g. build metadata).
pub fn label_value(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::stack;

    #[test]
    fn selector_is_name_and_instance_only() {
        let s = stack();
        let sel = selector(&s, Component::Consumer);
        assert_eq!(sel.len(), 2);
        assert_eq!(sel[NAME], "consumer");
        assert_eq!(sel[INSTANCE], "demo");
    }

    #[test]
    fn labels_follow_app_kubernetes_io_conventions() {
        let mut s = stack();
        s.spec.image.tag = Some("1.2.3+build.7".into());
        let l = labels(&s, Component::UrlApi);
        assert_eq!(l[NAME], "url-api");
        assert_eq!(l[INSTANCE], "demo");
        assert_eq!(l[COMPONENT], "api");
        assert_eq!(l[PART_OF], "shortener-stack");
        assert_eq!(l[MANAGED_BY], "shortener-operator");
        assert_eq!(l[VERSION], "1.2.3_build.7");
        assert_eq!(migration_labels(&s)[COMPONENT], "migration");
    }

    #[test]
    fn owner_reference_is_the_controller() {
        let owner = owner_reference(&stack());
        assert_eq!(owner.kind, "ShortenerStack");
        assert_eq!(owner.api_version, "shortener.example.io/v1alpha1");
        assert_eq!(owner.name, "demo");
        assert_eq!(owner.uid, "8d4a3c1e-0000-4000-8000-000000000001");
        assert_eq!(owner.controller, Some(true));
    }

    #[test]
    fn label_values_are_sanitized() {
        assert_eq!(label_value("v1+x"), "v1_x");
        assert_eq!(label_value("-a-"), "a");
        assert_eq!(label_value(&"x".repeat(80)).len(), 63);
    }
}
