//! Two operator replicas electing a leader through one Lease on the fake API server: the
//! standby waits, the leader's shutdown hands the Lease over at once.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use serde_json::Value;
use shortener_operator::leader::{run_as_leader, LeaderElector, Leadership, LeaseSettings};
use shortener_testkit::kube_api::FakeApiServer;
use tokio::sync::oneshot;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/shortener-operator";
/// Long enough that a successor waiting out the lease would miss every deadline below.
const LEASE_DURATION: Duration = Duration::from_secs(60);

fn replica(fake: &FakeApiServer, identity: &str) -> (Arc<LeaderElector>, Gauge) {
    let gauge = Gauge::default();
    let settings = LeaseSettings {
        lease_duration: LEASE_DURATION,
        renew_period: Duration::from_millis(200),
        retry_period: Duration::from_millis(50),
        ..LeaseSettings::new("shortener-operator".into(), "ops".into(), identity.into())
    };
    let elector = LeaderElector::new(fake.client("ops"), settings).with_gauge(gauge.clone());
    (Arc::new(elector), gauge)
}

fn holder(fake: &FakeApiServer) -> Value {
    fake.get(LEASE).expect("the lease exists")["spec"]["holderIdentity"].clone()
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// A replica's controller: runs until its SIGTERM arrives.
fn spawn_replica(
    elector: Arc<LeaderElector>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<Leadership<()>>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let stopped = async move {
            let _ = stopped.await;
        };
        // The shutdown signal reaches both the election wait and the controller.
        let (tx, rx) = tokio::sync::watch::channel(false);
        let relay = async move {
            stopped.await;
            let _ = tx.send(true);
        };
        let mut for_work = rx.clone();
        let mut for_wait = rx;
        let work = async move {
            let _ = for_work.wait_for(|s| *s).await;
        };
        let wait = async move {
            let _ = for_wait.wait_for(|s| *s).await;
        };
        tokio::join!(relay, run_as_leader(&elector, wait, work)).1
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_hands_the_lease_to_the_standby_on_shutdown() {
    let fake = FakeApiServer::new();
    let (a, a_leads) = replica(&fake, "operator-a");
    let (b, b_leads) = replica(&fake, "operator-b");

    let (stop_a, task_a) = spawn_replica(a.clone());
    until("a to lead", || a_leads.get() == 1).await;
    let (stop_b, task_b) = spawn_replica(b.clone());
    // The standby keeps asking and keeps standing by while a renews.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(holder(&fake), "operator-a");
    assert_eq!(b_leads.get(), 0);
    let renewals_seen = fake
        .log()
        .iter()
        .filter(|r| r.method == "PUT" && r.status == 200)
        .count();
    assert!(renewals_seen >= 2, "a renews its lease: {renewals_seen}");

    // SIGTERM to a (the rolling update removes the old pod): it releases the Lease.
    stop_a.send(()).unwrap();
    assert_eq!(task_a.await.unwrap(), Leadership::Released(()));
    assert_eq!(a_leads.get(), 0);
    // b takes over long before the old lease would have expired.
    tokio::time::timeout(LEASE_DURATION / 6, async {
        while b_leads.get() != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the standby takes the released lease without waiting for it to expire");
    let lease = fake.get(LEASE).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "operator-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);

    stop_b.send(()).unwrap();
    assert_eq!(task_b.await.unwrap(), Leadership::Released(()));
    assert!(holder(&fake).is_null(), "released on shutdown");
}

#[tokio::test]
async fn a_replica_stopped_while_standing_by_never_leads_nor_touches_the_lease() {
    let fake = FakeApiServer::new();
    let (a, _) = replica(&fake, "operator-a");
    let (b, b_leads) = replica(&fake, "operator-b");
    let (_stop_a, _task_a) = spawn_replica(a);
    until("a lease", || fake.get(LEASE).is_some()).await;
    let (stop_b, task_b) = spawn_replica(b);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_b.send(()).unwrap();
    assert_eq!(task_b.await.unwrap(), Leadership::NeverLed);
    assert_eq!(b_leads.get(), 0);
    assert_eq!(holder(&fake), "operator-a");
}
