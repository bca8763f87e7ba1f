//! The fake API server's semantics, through a real `kube::Client`.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use shortener_testkit::kube_api::{FakeApiServer, Fault};

const CM: &str = "/api/v1/namespaces/shop/configmaps/app";

fn cm(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "app", "namespace": "shop"}, "data": data})
}

fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn apply_creates_then_a_no_op_apply_keeps_the_resource_version() {
    let fake = FakeApiServer::new();
    let api: Api<ConfigMap> = Api::namespaced(fake.client("shop"), "shop");
    let pp = PatchParams::apply("op").force();
    api.patch("app", &pp, &Patch::Apply(cm(json!({"a": "1"}))))
        .await
        .unwrap();
    let first = rv(&fake.get(CM).unwrap());
    let mark = fake.mark();
    api.patch("app", &pp, &Patch::Apply(cm(json!({"a": "1"}))))
        .await
        .unwrap();
    assert_eq!(rv(&fake.get(CM).unwrap()), first, "no-op apply");
    assert!(!fake.log_since(mark)[0].changed);
    api.patch("app", &pp, &Patch::Apply(cm(json!({"a": "2"}))))
        .await
        .unwrap();
    assert_ne!(rv(&fake.get(CM).unwrap()), first);
    assert!(fake.log_since(mark)[1].changed);
}

#[tokio::test]
async fn a_field_dropped_from_the_apply_goes_unless_another_manager_owns_it() {
    let fake = FakeApiServer::new();
    let api: Api<ConfigMap> = Api::namespaced(fake.client("shop"), "shop");
    let pp = PatchParams::apply("op").force();
    api.patch(
        "app",
        &pp,
        &Patch::Apply(cm(json!({"a": "1", "b": "1", "c": "1"}))),
    )
    .await
    .unwrap();
    // Another manager edits `c` (and owns it from then on) and adds `d`.
    fake.edit_as("kubectl-edit", CM, |o| {
        o["data"]["c"] = "edited".into();
        o["data"]["d"] = "added".into();
    });
    assert_eq!(fake.owners_of(CM, "data.c"), ["kubectl-edit"]);
    api.patch("app", &pp, &Patch::Apply(cm(json!({"a": "1"}))))
        .await
        .unwrap();
    let data = &fake.get(CM).unwrap()["data"];
    assert_eq!(data, &json!({"a": "1", "c": "edited", "d": "added"}));
    // A forced apply of `c` takes it back.
    api.patch("app", &pp, &Patch::Apply(cm(json!({"a": "1", "c": "1"}))))
        .await
        .unwrap();
    assert_eq!(fake.get(CM).unwrap()["data"]["c"], "1");
    assert_eq!(fake.owners_of(CM, "data.c"), ["op"]);
    // Without force, a field another manager owns with another value is a conflict.
    fake.edit_as("kubectl-edit", CM, |o| o["data"]["a"] = "x".into());
    let err = api
        .patch(
            "app",
            &PatchParams::apply("op"),
            &Patch::Apply(cm(json!({"a": "1"}))),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(e) if e.code == 409));
}

#[tokio::test]
async fn status_subresource_and_json_patch_tests() {
    let fake = FakeApiServer::new();
    let path = fake.put(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"}, "spec": {"replicas": 1}
    }));
    let client = fake.client("shop");
    let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client, "shop");
    let pp = PatchParams::apply("op").force();
    // Status sent to the object is ignored; generation moves with the spec only.
    api.patch(
        "web",
        &pp,
        &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 2}, "status": {"replicas": 9}})),
    )
    .await
    .unwrap();
    let d = fake.get(&path).unwrap();
    assert!(d["status"].is_null());
    assert_eq!(d["metadata"]["generation"], 2);
    api.patch_status(
        "web",
        &pp,
        &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 7}, "status": {"replicas": 2}})),
    )
    .await
    .unwrap();
    let d = fake.get(&path).unwrap();
    assert_eq!(d["status"]["replicas"], 2);
    assert_eq!(d["spec"]["replicas"], 2, "spec sent to /status is ignored");
    assert_eq!(d["metadata"]["generation"], 2);
    // A failed `test` op rejects the whole patch.
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/replicas", "value": 5},
        {"op": "replace", "path": "/spec/replicas", "value": 3}
    ]))
    .unwrap();
    let err = api
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(e) if e.code == 422));
    assert_eq!(fake.get(&path).unwrap()["spec"]["replicas"], 2);
}

#[tokio::test]
async fn replace_is_optimistic_and_faults_are_injected() {
    let fake = FakeApiServer::new();
    let api: Api<ConfigMap> = Api::namespaced(fake.client("shop"), "shop");
    let created = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(cm(json!({"a": "1"}))).unwrap(),
        )
        .await
        .unwrap();
    let mut stale = created.clone();
    fake.edit_as("other", CM, |o| o["data"]["a"] = "2".into());
    stale.data = Some([("a".to_string(), "3".to_string())].into());
    let err = api
        .replace("app", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(e) if e.code == 409));
    fake.fail(Fault {
        method: Some("GET".into()),
        path_contains: "/configmaps/".into(),
        status: 503,
        times: Some(1),
    });
    assert!(api.get("app").await.is_err());
    assert_eq!(api.get("app").await.unwrap().data.unwrap()["a"], "2");
}
