//! The reconciler against the shared fake API server (`shortener_testkit::kube_api`):
//! a stack, the topics the reconciler sees, and helpers that play the controllers that do
//! not exist there (Job and Deployment status) and the people who edit objects by hand.
#![allow(dead_code, unused_imports)]

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use serde_json::{json, Value};
use shortener_operator::crd::ShortenerStack;
use shortener_operator::reconcile::{reconcile, stack_store, Context};
use shortener_operator::resources::migration_job::migration_job_name;
use shortener_operator::topic::MemoryTopicManager;
pub use shortener_testkit::kube_api::{FakeApiServer, Fault, Recorded};

pub const NS: &str = "shop";
pub const STACK_PATH: &str =
    "/apis/shortener.example.io/v1alpha1/namespaces/shop/shortenerstacks/demo";
pub const CM: &str = "/api/v1/namespaces/shop/configmaps";
pub const SVC: &str = "/api/v1/namespaces/shop/services";
pub const JOBS: &str = "/apis/batch/v1/namespaces/shop/jobs";
pub const DEPLOY: &str = "/apis/apps/v1/namespaces/shop/deployments";
pub const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
pub const SECRETS: &str = "/api/v1/namespaces/shop/secrets";
pub const PDB: &str = "/apis/policy/v1/namespaces/shop/poddisruptionbudgets";
pub const NETPOL: &str = "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies";
pub const MONITORS: &str = "/apis/monitoring.coreos.com/v1/namespaces/shop/podmonitors";
pub const COMPONENTS: [&str; 3] = ["demo-url-api", "demo-analytics-rpc", "demo-consumer"];

pub struct Harness {
    pub api: FakeApiServer,
    pub topics: Arc<MemoryTopicManager>,
}

impl Harness {
    pub fn new(stack: Value) -> Self {
        Self::with_topics(stack, Arc::new(MemoryTopicManager::default()))
    }

    pub fn with_topics(stack: Value, topics: Arc<MemoryTopicManager>) -> Self {
        let api = FakeApiServer::new();
        api.put_as("kubectl", stack);
        Self { api, topics }
    }

    /// A fresh controller context whose stack store holds the fake's ShortenerStacks.
    pub fn context(&self) -> Arc<Context> {
        let mut ctx = Context::new(self.api.client(NS), self.topics.clone(), Default::default());
        ctx.stacks = self.stack_store();
        Arc::new(ctx)
    }

    /// The ShortenerStacks of every namespace, as the controller's reflector holds them.
    pub fn stack_store(&self) -> Store<ShortenerStack> {
        stack_store(
            self.api
                .paths("/apis/shortener.example.io/v1alpha1/namespaces/")
                .iter()
                .filter(|p| p.contains("/shortenerstacks/"))
                .map(|p| serde_json::from_value(self.get(p).unwrap()).unwrap()),
        )
    }

    pub fn stack(&self) -> Arc<ShortenerStack> {
        Arc::new(serde_json::from_value(self.get(STACK_PATH).expect("the stack exists")).unwrap())
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.api.get(path)
    }

    /// A change of the stack's spec (a user's `kubectl apply`).
    pub fn edit_stack(&self, f: impl FnOnce(&mut Value)) {
        self.api.edit_as("kubectl", STACK_PATH, f);
    }

    /// A hand edit of a child (`kubectl edit`).
    pub fn hand_edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        self.api.edit_as("kubectl-edit", path, f);
    }

    /// One reconcile pass with a fresh controller context; returns the requests it made.
    pub async fn pass(&self) -> (Action, Vec<Recorded>) {
        let (result, log) = self.try_pass().await;
        (result.expect("reconcile succeeds"), log)
    }

    /// One reconcile pass with `ctx` (a controller that keeps running between passes).
    pub async fn pass_with(&self, ctx: &Arc<Context>) -> Vec<Recorded> {
        let mark = self.api.mark();
        reconcile(self.stack(), ctx.clone())
            .await
            .expect("reconcile succeeds");
        self.api.log_since(mark)
    }

    pub async fn try_pass(&self) -> (Result<Action, shortener_operator::Error>, Vec<Recorded>) {
        let mark = self.api.mark();
        let result = reconcile(self.stack(), self.context()).await;
        (result, self.api.log_since(mark))
    }

    pub fn job_path(&self) -> String {
        format!("{JOBS}/{}", migration_job_name(&self.stack()))
    }

    /// The Job controller finishes the first migration Job with `type_` (`Complete`,
    /// `Failed`).
    pub fn mark_job(&self, type_: &str, reason: &str, message: &str) {
        self.finish_job(&self.job_path(), type_, reason, message, None);
    }

    /// The Job controller finishes the Job at `path`, `minutes_ago`.
    pub fn finish_job(
        &self,
        path: &str,
        type_: &str,
        reason: &str,
        message: &str,
        minutes_ago: Option<i64>,
    ) {
        let mut condition = json!({
            "type": type_, "status": "True", "reason": reason, "message": message
        });
        if let Some(m) = minutes_ago {
            let at = chrono::Utc::now() - chrono::Duration::minutes(m);
            condition["lastTransitionTime"] = at.format("%Y-%m-%dT%H:%M:%SZ").to_string().into();
        }
        self.api
            .set_status(path, json!({"conditions": [condition]}));
    }

    /// The migration Job of the stack's current attempt (from its status).
    pub fn current_job_path(&self) -> String {
        let stack = self.get(STACK_PATH).unwrap();
        format!(
            "{JOBS}/{}",
            stack["status"]["migration"]["job"]
                .as_str()
                .expect("an attempt")
        )
    }

    /// The Deployment controller reports every Deployment rolled out and ready.
    pub fn mark_deployments_ready(&self) {
        for name in COMPONENTS {
            let path = format!("{DEPLOY}/{name}");
            let d = self.get(&path).expect("deployment exists");
            let replicas = d["spec"]["replicas"].clone();
            self.api.set_status(
                &path,
                json!({
                    "observedGeneration": d["metadata"]["generation"],
                    "replicas": replicas, "updatedReplicas": replicas,
                    "readyReplicas": replicas, "availableReplicas": replicas,
                    "conditions": [
                        {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
                    ]
                }),
            );
        }
    }

    /// Creation through a settled, ready stack.
    pub async fn settle(&self) {
        self.pass().await;
        self.pass().await;
        self.mark_job("Complete", "", "");
        self.pass().await;
        self.mark_deployments_ready();
        self.pass().await;
    }
}

pub fn stack_json(delete_topic_on_delete: bool) -> Value {
    json!({
        "apiVersion": "shortener.example.io/v1alpha1",
        "kind": "ShortenerStack",
        "metadata": {
            "name": "demo", "namespace": NS, "uid": "8d4a3c1e-0000-4000-8000-000000000001"
        },
        "spec": {
            "kafka": {"bootstrapServers": "kafka:9092", "deleteTopicOnDelete": delete_topic_on_delete},
            "database": {"urlSecretRef": {"name": "shortener-db", "key": "url"}}
        }
    })
}

pub fn lines(log: &[Recorded]) -> Vec<String> {
    log.iter().map(Recorded::line).collect()
}

pub fn writes(log: &[Recorded]) -> Vec<String> {
    log.iter()
        .filter(|r| r.is_write())
        .map(Recorded::line)
        .collect()
}

pub fn condition(stack: &Value, type_: &str) -> Value {
    stack["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition in {stack}"))
}

pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}
