//! The stack's finalizer (apply, client required): added only when deletion has something
//! to clean up (the topics), by JSON patches that test the list they change.

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::FINALIZER;
use crate::crd::ShortenerStack;
use crate::error::Error;

/// JSON patch that adds the finalizer, testing the list it saw (Kubernetes does not
/// deduplicate finalizers).
pub(super) async fn add(api: &Api<ShortenerStack>, stack: &ShortenerStack) -> Result<(), Error> {
    let patch = if stack.finalizers().is_empty() {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    } else {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": stack.finalizers()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ])
    };
    let patch: json_patch::Patch = serde_json::from_value(patch).expect("a valid JSON patch");
    api.patch(
        &stack.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await?;
    Ok(())
}

/// JSON patch that removes the finalizer at `index`, testing it is still ours there.
pub(super) async fn remove(
    api: &Api<ShortenerStack>,
    stack: &ShortenerStack,
    index: usize,
) -> Result<(), Error> {
    let path = format!("/metadata/finalizers/{index}");
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]))
    .expect("a valid JSON patch");
    api.patch(
        &stack.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await?;
    Ok(())
}
