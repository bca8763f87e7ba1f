//! An in-memory Kubernetes API server behind `tower_test`'s mock service, for driving a
//! `kube::Client` through scenarios without a cluster.
//!
//! It keeps objects by path and answers what controllers use, with the semantics that
//! matter for them:
//! - server-side apply with field ownership per manager: a forced apply takes the fields
//!   it sends; a field the manager applied before and now leaves out is removed unless
//!   another manager also owns it; lists are atomic (owned whole);
//! - `resourceVersion` moves only when an object really changes (a no-op apply, update
//!   or patch leaves it, as the API server does), `generation` only when a field outside
//!   `metadata` and `status` changes;
//! - the `status` subresource: writes to an object keep its status, writes to
//!   `<object>/status` touch only the status;
//! - JSON patches (RFC 6902) with `test` operations (a failed test is 422), merge patches,
//!   optimistic concurrency on PUT (`resourceVersion` mismatch is 409), create conflicts,
//!   deletion with finalizers (`deletionTimestamp`), lists with label selectors, the
//!   `scale` subresource of workloads, metadata-only reads (`PartialObjectMetadata`);
//! - injected faults (a status code for matching requests) and a log of every request
//!   with whether it changed a `resourceVersion`.
//!
//! Scenarios are written against it the way kube-rs controller-rs's `fixtures.rs` drives
//! its reconciler: put the world in a state (`put`, `edit_as`, `set_status`, `fail`), run
//! the code under test, then assert on the stored objects and the request log. Watches
//! are not served; the Deployment, Job and garbage collectors do not run (tests play them
//! with `set_status` and `collect_garbage`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{json, Map, Value};

/// Manager recorded for writes that name none (what `kubectl edit` and old clients do).
pub const DEFAULT_MANAGER: &str = "unknown";

/// One request as the fake received it, and what it did.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    /// The `Accept` header (`...;as=PartialObjectMetadata;...` asks for metadata only).
    pub accept: Option<String>,
    pub body: Value,
    pub status: u16,
    /// Whether the request changed an object's `resourceVersion` (created, changed or
    /// deleted it).
    pub changed: bool,
}

impl Recorded {
    /// `METHOD path`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }
}

/// A fault: requests matching `method` (any when `None`) and a path containing
/// `path_contains` are answered with `status`, `times` times (always when `None`).
#[derive(Clone, Debug)]
pub struct Fault {
    pub method: Option<String>,
    pub path_contains: String,
    pub status: u16,
    pub times: Option<usize>,
}

/// Field paths (map keys from the root; a list is one leaf) a manager owns.
type FieldPath = Vec<String>;

#[derive(Clone, Debug, Default)]
struct Ownership {
    operation: &'static str,
    fields: BTreeSet<FieldPath>,
}

/// Owner key: the manager, and whether it wrote through the `status` subresource.
type Owner = (String, bool);

#[derive(Clone, Debug)]
struct Stored {
    object: Value,
    owners: BTreeMap<Owner, Ownership>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Stored>,
    log: Vec<Recorded>,
    faults: Vec<Fault>,
    resource_version: u64,
    uids: u64,
}

/// Where a request points.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    /// `/api/v1` or `/apis/<group>/<version>`.
    prefix: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

impl Target {
    fn parse(path: &str) -> Option<Target> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (prefix, rest) = match segments.first() {
            Some(&"api") if segments.len() >= 2 => {
                (format!("/api/{}", segments[1]), &segments[2..])
            }
            Some(&"apis") if segments.len() >= 3 => (
                format!("/apis/{}/{}", segments[1], segments[2]),
                &segments[3..],
            ),
            _ => return None,
        };
        let (namespace, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
            (Some(rest[1].to_string()), &rest[2..])
        } else {
            (None, rest)
        };
        let plural = rest.first()?.to_string();
        Some(Target {
            prefix,
            namespace,
            plural,
            name: rest.get(1).map(|s| s.to_string()),
            subresource: rest.get(2).map(|s| s.to_string()),
        })
    }

    fn collection(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/namespaces/{ns}/{}", self.prefix, self.plural),
            None => format!("{}/{}", self.prefix, self.plural),
        }
    }

    fn object(&self, name: &str) -> String {
        format!("{}/{name}", self.collection())
    }
}

/// Lower-case plural of a kind, the way the built-in resources and this repository's
/// custom resources are named.
pub fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else if lower.ends_with('s') {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    }
}

/// The path of an object from its `apiVersion`, `kind`, namespace and name.
pub fn path_of(object: &Value) -> String {
    let api_version = object["apiVersion"]
        .as_str()
        .expect("object has apiVersion");
    let kind = object["kind"].as_str().expect("object has kind");
    let name = object["metadata"]["name"]
        .as_str()
        .expect("object has a name");
    let prefix = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    match object["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{prefix}/namespaces/{ns}/{}/{name}", plural(kind)),
        None => format!("{prefix}/{}/{name}", plural(kind)),
    }
}

fn status_body(code: u16, reason: &str, message: String) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    })
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Fields the API server sets itself; nobody owns them.
fn system_field(path: &[String]) -> bool {
    matches!(
        path.first().map(String::as_str),
        Some("apiVersion" | "kind")
    ) || (path.first().map(String::as_str) == Some("metadata")
        && matches!(
            path.get(1).map(String::as_str),
            Some(
                "name"
                    | "namespace"
                    | "uid"
                    | "resourceVersion"
                    | "generation"
                    | "creationTimestamp"
                    | "deletionTimestamp"
                    | "managedFields"
                    | "generateName"
            )
        ))
}

/// Leaf field paths of `value`: scalars, lists and empty maps.
fn leaves(value: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                prefix.push(k.clone());
                leaves(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            if !prefix.is_empty() && !system_field(prefix) {
                out.insert(prefix.clone());
            }
        }
    }
}

fn fields_of(value: &Value, in_status: bool) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    leaves(value, &mut Vec::new(), &mut out);
    out.retain(|p| (p.first().map(String::as_str) == Some("status")) == in_status);
    out
}

fn get_path<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, k| v.as_object()?.get(k))
}

fn set_path(value: &mut Value, path: &[String], leaf: Value) {
    let mut cursor = value;
    for k in &path[..path.len() - 1] {
        if !cursor.is_object() {
            *cursor = Value::Object(Map::new());
        }
        let map = cursor.as_object_mut().expect("just made an object");
        cursor = map
            .entry(k.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !cursor.is_object() {
            *cursor = Value::Object(Map::new());
        }
    }
    if let Some(map) = cursor.as_object_mut() {
        map.insert(path[path.len() - 1].clone(), leaf);
    }
}

/// Removes the field and any map it leaves empty.
fn remove_path(value: &mut Value, path: &[String]) {
    fn go(value: &mut Value, path: &[String]) -> bool {
        let Some(map) = value.as_object_mut() else {
            return false;
        };
        if path.len() == 1 {
            map.remove(&path[0]);
        } else if let Some(child) = map.get_mut(&path[0]) {
            if go(child, &path[1..]) {
                map.remove(&path[0]);
            }
        }
        map.is_empty()
    }
    go(value, path);
}

/// Leaf paths whose value differs between `a` and `b`.
fn changed_fields(a: &Value, b: &Value, in_status: bool) -> BTreeSet<FieldPath> {
    let (fa, fb) = (fields_of(a, in_status), fields_of(b, in_status));
    fa.union(&fb)
        .filter(|p| get_path(a, p) != get_path(b, p))
        .cloned()
        .collect()
}

/// `managedFields` in the API's FieldsV1 form (`f:<key>` maps, `{}` leaves).
fn managed_fields(owners: &BTreeMap<Owner, Ownership>, api_version: &Value) -> Value {
    let entries: Vec<Value> = owners
        .iter()
        .filter(|(_, o)| !o.fields.is_empty())
        .map(|((manager, subresource), o)| {
            let mut tree = Value::Object(Map::new());
            for path in &o.fields {
                let keys: Vec<String> = path.iter().map(|k| format!("f:{k}")).collect();
                set_path(&mut tree, &keys, json!({}));
            }
            let mut entry = json!({
                "manager": manager, "operation": o.operation, "apiVersion": api_version,
                "fieldsType": "FieldsV1", "fieldsV1": tree,
            });
            if *subresource {
                entry["subresource"] = "status".into();
            }
            entry
        })
        .collect();
    Value::Array(entries)
}

/// The object without what the server rewrites on every write (to compare contents).
fn contents(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(meta) = o["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
        meta.remove("generation");
    }
    o
}

fn spec_part(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(map) = o.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    o
}

impl State {
    fn next_rv(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// Stores `object` at `path` (replacing `previous`), bumping resourceVersion and
    /// generation when its contents changed. Returns whether it changed.
    fn commit(&mut self, path: &str, mut stored: Stored, previous: Option<&Stored>) -> bool {
        let changed = match previous {
            Some(p) => contents(&p.object) != contents(&stored.object),
            None => true,
        };
        let object = &mut stored.object;
        match previous {
            Some(p) => {
                let rv = if changed {
                    self.next_rv()
                } else {
                    p.object["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or("0")
                        .to_string()
                };
                object["metadata"]["resourceVersion"] = rv.into();
                let generation = p.object["metadata"]["generation"].as_i64().unwrap_or(1);
                let bump = spec_part(&p.object) != spec_part(object);
                object["metadata"]["generation"] = (generation + i64::from(bump)).into();
            }
            None => {
                object["metadata"]["resourceVersion"] = self.next_rv().into();
                object["metadata"]["generation"] = 1.into();
                self.uids += 1;
                if object["metadata"]["uid"].as_str().is_none() {
                    object["metadata"]["uid"] =
                        format!("00000000-0000-4000-8000-{:012}", self.uids).into();
                }
                if object["metadata"]["creationTimestamp"].is_null() {
                    object["metadata"]["creationTimestamp"] = now().into();
                }
            }
        }
        let api_version = object["apiVersion"].clone();
        object["metadata"]["managedFields"] = managed_fields(&stored.owners, &api_version);
        self.objects.insert(path.to_string(), stored);
        changed
    }

    /// A write by `manager` that is not an apply (create, update, patch): it owns every
    /// field it changed; fields it removed are owned by nobody.
    fn update(
        &mut self,
        path: &str,
        manager: &str,
        mut new: Value,
        in_status: bool,
    ) -> (StatusCode, Value, bool) {
        let previous = self.objects.get(path).cloned();
        let (mut owners, old_object) = match &previous {
            Some(p) => (p.owners.clone(), p.object.clone()),
            None => (BTreeMap::new(), Value::Null),
        };
        if let Some(p) = &previous {
            // The other half of the object is not this endpoint's to change.
            let keep_status = !in_status;
            if keep_status {
                new["status"] = p.object["status"].clone();
            } else {
                let status = new["status"].clone();
                new = p.object.clone();
                new["status"] = status;
            }
            if new["status"].is_null() {
                if let Some(map) = new.as_object_mut() {
                    map.remove("status");
                }
            }
            for k in ["uid", "creationTimestamp", "deletionTimestamp"] {
                if !p.object["metadata"][k].is_null() {
                    new["metadata"][k] = p.object["metadata"][k].clone();
                }
            }
        }
        let changed = changed_fields(&old_object, &new, in_status);
        let key: Owner = (manager.to_string(), in_status);
        for (k, o) in owners.iter_mut() {
            if *k != key {
                o.fields.retain(|f| !changed.contains(f));
            }
        }
        let entry = owners.entry(key).or_default();
        entry.operation = "Update";
        entry.fields.extend(
            changed
                .iter()
                .filter(|f| get_path(&new, f).is_some())
                .cloned(),
        );
        let present = fields_of(&new, in_status);
        for ((_, status_half), o) in owners.iter_mut() {
            if *status_half == in_status {
                o.fields.retain(|f| present.contains(f));
            }
        }
        owners.retain(|_, o| !o.fields.is_empty());
        let changed = self.commit(
            path,
            Stored {
                object: new,
                owners,
            },
            previous.as_ref(),
        );
        (StatusCode::OK, self.objects[path].object.clone(), changed)
    }

    /// Server-side apply of `body` by `manager`.
    fn apply(
        &mut self,
        path: &str,
        manager: &str,
        body: &Value,
        force: bool,
        in_status: bool,
    ) -> (StatusCode, Value, bool) {
        let previous = self.objects.get(path).cloned();
        let applied = fields_of(body, in_status);
        let (mut object, mut owners) = match &previous {
            Some(p) => (p.object.clone(), p.owners.clone()),
            None if in_status => {
                return (
                    StatusCode::NOT_FOUND,
                    status_body(404, "NotFound", format!("{path} not found")),
                    false,
                )
            }
            None => {
                let mut object = json!({
                    "apiVersion": body["apiVersion"], "kind": body["kind"],
                    "metadata": {"name": body["metadata"]["name"]}
                });
                if let Some(ns) = body["metadata"]["namespace"].as_str() {
                    object["metadata"]["namespace"] = ns.into();
                }
                (object, BTreeMap::new())
            }
        };
        let key: Owner = (manager.to_string(), in_status);
        let mut conflicts = Vec::new();
        for (k, o) in owners.iter_mut() {
            if *k == key {
                continue;
            }
            let m = &k.0;
            let theirs: Vec<FieldPath> = o.fields.intersection(&applied).cloned().collect();
            for f in theirs {
                if get_path(&object, &f) != get_path(body, &f) {
                    if !force {
                        conflicts.push(format!("{m}: .{}", f.join(".")));
                        continue;
                    }
                    o.fields.remove(&f);
                }
            }
        }
        if !conflicts.is_empty() {
            return (
                StatusCode::CONFLICT,
                status_body(
                    409,
                    "Conflict",
                    format!("Apply failed with conflicts: {}", conflicts.join(", ")),
                ),
                false,
            );
        }
        let before = owners
            .get(&key)
            .map(|o| o.fields.clone())
            .unwrap_or_default();
        for dropped in before.difference(&applied) {
            let shared = owners
                .iter()
                .any(|(k, o)| *k != key && o.fields.contains(dropped));
            if !shared {
                remove_path(&mut object, dropped);
            }
        }
        for f in &applied {
            if let Some(v) = get_path(body, f) {
                set_path(&mut object, f, v.clone());
            }
        }
        owners.insert(
            key,
            Ownership {
                operation: "Apply",
                fields: applied,
            },
        );
        owners.retain(|_, o| !o.fields.is_empty());
        let changed = self.commit(path, Stored { object, owners }, previous.as_ref());
        (StatusCode::OK, self.objects[path].object.clone(), changed)
    }

    fn delete(&mut self, path: &str) -> (StatusCode, Value, bool) {
        let Some(stored) = self.objects.get(path).cloned() else {
            return (
                StatusCode::NOT_FOUND,
                status_body(404, "NotFound", format!("{path} not found")),
                false,
            );
        };
        let finalizers = stored.object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if finalizers {
            if !stored.object["metadata"]["deletionTimestamp"].is_null() {
                return (StatusCode::OK, stored.object, false);
            }
            let mut next = stored.clone();
            next.object["metadata"]["deletionTimestamp"] = now().into();
            let changed = self.commit(path, next, Some(&stored));
            return (StatusCode::OK, self.objects[path].object.clone(), changed);
        }
        self.objects.remove(path);
        (StatusCode::OK, stored.object, true)
    }

    /// An object whose last finalizer went away while it was being deleted is gone.
    fn finish_deletion(&mut self, path: &str) {
        let done = self.objects.get(path).is_some_and(|s| {
            !s.object["metadata"]["deletionTimestamp"].is_null()
                && s.object["metadata"]["finalizers"]
                    .as_array()
                    .is_none_or(|f| f.is_empty())
        });
        if done {
            self.objects.remove(path);
        }
    }

    /// The `scale` subresource (autoscaling/v1 Scale) of a workload: reads and sets its
    /// `spec.replicas`.
    fn scale(
        &mut self,
        target: &Target,
        rec: &Recorded,
        manager: &str,
    ) -> (StatusCode, Value, bool) {
        let name = target.name.clone().unwrap_or_default();
        let path = target.object(&name);
        let Some(live) = self.objects.get(&path).map(|s| s.object.clone()) else {
            return (
                StatusCode::NOT_FOUND,
                status_body(404, "NotFound", format!("{path} not found")),
                false,
            );
        };
        let scale_of = |o: &Value| {
            json!({
                "apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"],
                             "resourceVersion": o["metadata"]["resourceVersion"]},
                "spec": {"replicas": o["spec"]["replicas"]},
                "status": {"replicas": o["status"]["replicas"].as_i64().unwrap_or(0)}
            })
        };
        match rec.method.as_str() {
            "GET" => (StatusCode::OK, scale_of(&live), false),
            "PATCH" | "PUT" => {
                let replicas = rec.body["spec"]["replicas"].clone();
                if !replicas.is_i64() {
                    return (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        status_body(422, "Invalid", "spec.replicas must be an integer".into()),
                        false,
                    );
                }
                let mut object = live;
                object["spec"]["replicas"] = replicas;
                let (_, object, changed) = self.update(&path, manager, object, false);
                (StatusCode::OK, scale_of(&object), changed)
            }
            method => (
                StatusCode::METHOD_NOT_ALLOWED,
                status_body(405, "MethodNotAllowed", format!("{method} {}", rec.path)),
                false,
            ),
        }
    }

    fn list(&self, target: &Target, query: &BTreeMap<String, String>) -> Value {
        let selector: Vec<(String, String)> = query
            .get("labelSelector")
            .map(|s| {
                s.split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.trim_end_matches('=').to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|(path, _)| {
                Target::parse(path).is_some_and(|t| {
                    t.prefix == target.prefix
                        && t.plural == target.plural
                        && (target.namespace.is_none() || t.namespace == target.namespace)
                })
            })
            .map(|(_, s)| &s.object)
            .filter(|o| {
                selector
                    .iter()
                    .all(|(k, v)| o["metadata"]["labels"][k].as_str() == Some(v.as_str()))
            })
            .cloned()
            .collect();
        json!({
            "apiVersion": "v1", "kind": "List",
            "metadata": {"resourceVersion": self.resource_version.to_string()},
            "items": items
        })
    }

    fn handle(&mut self, rec: &Recorded) -> (StatusCode, Value, bool) {
        if let Some(fault) = self.faults.iter_mut().find(|f| {
            f.method.as_deref().is_none_or(|m| m == rec.method)
                && rec.path.contains(&f.path_contains)
                && f.times != Some(0)
        }) {
            if let Some(n) = fault.times.as_mut() {
                *n -= 1;
            }
            let code = fault.status;
            return (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                status_body(
                    code,
                    "InjectedFault",
                    format!("injected fault on {}", rec.path),
                ),
                false,
            );
        }
        let Some(target) = Target::parse(&rec.path) else {
            return (
                StatusCode::NOT_FOUND,
                status_body(404, "NotFound", format!("no route {}", rec.path)),
                false,
            );
        };
        let manager = rec
            .query
            .get("fieldManager")
            .cloned()
            .unwrap_or_else(|| DEFAULT_MANAGER.to_string());
        if target.subresource.as_deref() == Some("scale") {
            return self.scale(&target, rec, &manager);
        }
        let in_status = target.subresource.as_deref() == Some("status");
        let object_path = target.name.as_ref().map(|n| target.object(n));
        let not_found = |p: &str| {
            (
                StatusCode::NOT_FOUND,
                status_body(404, "NotFound", format!("{p} not found")),
                false,
            )
        };
        match (rec.method.as_str(), object_path) {
            ("GET", None) if rec.query.get("watch").is_some_and(|w| w == "true") => (
                StatusCode::METHOD_NOT_ALLOWED,
                status_body(405, "MethodNotAllowed", "watches are not served".into()),
                false,
            ),
            ("GET", None) => (StatusCode::OK, self.list(&target, &rec.query), false),
            ("GET", Some(path)) => match self.objects.get(&path) {
                Some(s)
                    if rec
                        .accept
                        .as_deref()
                        .is_some_and(|a| a.contains("as=PartialObjectMetadata")) =>
                {
                    let meta = json!({
                        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                        "metadata": s.object["metadata"]
                    });
                    (StatusCode::OK, meta, false)
                }
                Some(s) => (StatusCode::OK, s.object.clone(), false),
                None => not_found(&path),
            },
            ("POST", None) => {
                let mut body = rec.body.clone();
                if body["metadata"]["name"].as_str().is_none() {
                    let prefix = body["metadata"]["generateName"].as_str().unwrap_or("obj-");
                    body["metadata"]["name"] =
                        format!("{prefix}{:05}", self.resource_version + 1).into();
                }
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let path = target.object(&name);
                if self.objects.contains_key(&path) {
                    return (
                        StatusCode::CONFLICT,
                        status_body(409, "AlreadyExists", format!("{path} already exists")),
                        false,
                    );
                }
                let (_, object, changed) = self.update(&path, &manager, body, false);
                (StatusCode::CREATED, object, changed)
            }
            ("PUT", Some(path)) => {
                let Some(live) = self.objects.get(&path) else {
                    return not_found(&path);
                };
                let sent = rec.body["metadata"]["resourceVersion"].as_str();
                let current = live.object["metadata"]["resourceVersion"].as_str();
                if sent.is_some() && sent != current {
                    return (
                        StatusCode::CONFLICT,
                        status_body(
                            409,
                            "Conflict",
                            format!("{path}: the object has been modified"),
                        ),
                        false,
                    );
                }
                let answer = self.update(&path, &manager, rec.body.clone(), in_status);
                self.finish_deletion(&path);
                answer
            }
            ("PATCH", Some(path)) => {
                let ct = rec.content_type.clone().unwrap_or_default();
                if ct.starts_with("application/apply-patch") {
                    let force = rec.query.get("force").is_some_and(|f| f == "true");
                    return self.apply(&path, &manager, &rec.body, force, in_status);
                }
                let Some(live) = self.objects.get(&path) else {
                    return not_found(&path);
                };
                let mut doc = live.object.clone();
                if ct.starts_with("application/json-patch") {
                    // As the API server's JSON patch library does, a `test` for null
                    // passes on a missing path (how "no finalizers yet" is tested).
                    let body: Vec<Value> = rec
                        .body
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|op| {
                            !(op["op"] == "test"
                                && op["value"].is_null()
                                && op["path"]
                                    .as_str()
                                    .is_some_and(|p| doc.pointer(p).is_none()))
                        })
                        .collect();
                    let ops: json_patch::Patch = match serde_json::from_value(Value::Array(body)) {
                        Ok(p) => p,
                        Err(e) => {
                            return (
                                StatusCode::BAD_REQUEST,
                                status_body(400, "BadRequest", e.to_string()),
                                false,
                            )
                        }
                    };
                    if let Err(e) = json_patch::patch(&mut doc, &ops) {
                        return (
                            StatusCode::UNPROCESSABLE_ENTITY,
                            status_body(422, "Invalid", e.to_string()),
                            false,
                        );
                    }
                } else {
                    // Merge patch; a strategic merge patch is treated as one (lists are
                    // replaced whole).
                    json_patch::merge(&mut doc, &rec.body);
                }
                let answer = self.update(&path, &manager, doc, in_status);
                self.finish_deletion(&path);
                answer
            }
            ("DELETE", Some(path)) => self.delete(&path),
            (method, _) => (
                StatusCode::METHOD_NOT_ALLOWED,
                status_body(405, "MethodNotAllowed", format!("{method} {}", rec.path)),
                false,
            ),
        }
    }
}

/// The fake API server; clones share its state.
#[derive(Clone, Default)]
pub struct FakeApiServer {
    state: Arc<Mutex<State>>,
}

impl FakeApiServer {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake API server lock")
    }

    /// A client served by this fake (each call spawns its own serving task on the
    /// current tokio runtime).
    pub fn client(&self, default_namespace: &str) -> kube::Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let state = self.state.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let query = parts
                    .uri
                    .query()
                    .unwrap_or("")
                    .split('&')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (form_decode(k), form_decode(v))
                    })
                    .collect();
                let mut rec = Recorded {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    query,
                    content_type: parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                    accept: parts
                        .headers
                        .get(http::header::ACCEPT)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                    body,
                    status: 0,
                    changed: false,
                };
                let (status, value) = {
                    let mut state = state.lock().expect("fake API server lock");
                    let (status, value, changed) = state.handle(&rec);
                    rec.status = status.as_u16();
                    rec.changed = changed;
                    state.log.push(rec);
                    (status, value)
                };
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&value).unwrap_or_default()))
                    .expect("valid response");
                send.send_response(response);
            }
        });
        kube::Client::new(service, default_namespace)
    }

    /// Creates or replaces an object as `manager` would with an update; returns its path.
    pub fn put_as(&self, manager: &str, object: Value) -> String {
        let path = path_of(&object);
        let mut state = self.lock();
        let status = object.get("status").cloned();
        state.update(&path, manager, object, false);
        if let Some(status) = status {
            let mut with_status = state.objects[&path].object.clone();
            with_status["status"] = status;
            state.update(&path, manager, with_status, true);
        }
        path
    }

    /// Creates or replaces an object (manager `testkit`); returns its path.
    pub fn put(&self, object: Value) -> String {
        self.put_as("testkit", object)
    }

    /// The stored object at `path`.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.lock().objects.get(path).map(|s| s.object.clone())
    }

    /// Paths of the stored objects under `prefix` (a collection path).
    pub fn paths(&self, prefix: &str) -> Vec<String> {
        self.lock()
            .objects
            .keys()
            .filter(|p| p.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// An edit by another client (e.g. `kubectl edit`, manager `kubectl-edit`): an update
    /// of the object (not its status), taking ownership of the fields it changes.
    pub fn edit_as(&self, manager: &str, path: &str, f: impl FnOnce(&mut Value)) {
        let mut state = self.lock();
        let mut object = state
            .objects
            .get(path)
            .unwrap_or_else(|| panic!("no {path}"))
            .object
            .clone();
        f(&mut object);
        state.update(path, manager, object, false);
    }

    /// A status write by the controller that owns it (the Deployment or Job controller).
    pub fn set_status(&self, path: &str, status: Value) {
        let mut state = self.lock();
        let mut object = state
            .objects
            .get(path)
            .unwrap_or_else(|| panic!("no {path}"))
            .object
            .clone();
        object["status"] = status;
        state.update(path, "kube-controller-manager", object, true);
    }

    /// Deletes an object as a client would (finalizers hold it with a deletionTimestamp).
    pub fn delete(&self, path: &str) {
        self.lock().delete(path);
    }

    /// Removes objects whose controller owner no longer exists (the garbage collector).
    pub fn collect_garbage(&self) {
        let mut state = self.lock();
        loop {
            let uids: BTreeSet<String> = state
                .objects
                .values()
                .filter_map(|s| s.object["metadata"]["uid"].as_str().map(str::to_string))
                .collect();
            let orphans: Vec<String> = state
                .objects
                .iter()
                .filter(|(_, s)| {
                    s.object["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|refs| {
                            !refs.is_empty()
                                && refs
                                    .iter()
                                    .all(|r| !uids.contains(r["uid"].as_str().unwrap_or_default()))
                        })
                })
                .map(|(p, _)| p.clone())
                .collect();
            if orphans.is_empty() {
                return;
            }
            for p in orphans {
                state.objects.remove(&p);
            }
        }
    }

    /// Answers matching requests with an error status.
    pub fn fail(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Removes every injected fault.
    pub fn heal(&self) {
        self.lock().faults.clear();
    }

    /// Number of requests so far, to slice `log_since` later.
    pub fn mark(&self) -> usize {
        self.lock().log.len()
    }

    /// Requests received since `mark`.
    pub fn log_since(&self, mark: usize) -> Vec<Recorded> {
        self.lock().log[mark..].to_vec()
    }

    /// Every request received.
    pub fn log(&self) -> Vec<Recorded> {
        self.log_since(0)
    }

    /// Managers that own `field` (a dotted path from the root) of the object at `path`.
    pub fn owners_of(&self, path: &str, field: &str) -> Vec<String> {
        let field: FieldPath = field.split('.').map(str::to_string).collect();
        self.lock()
            .objects
            .get(path)
            .map(|s| {
                s.owners
                    .iter()
                    .filter(|(_, o)| o.fields.iter().any(|f| f.starts_with(&field)))
                    .map(|((m, _), _)| m.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
