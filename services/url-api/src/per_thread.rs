//! Metrics written on every request without a shared lock or a shared atomic: each thread
//! writes its own shard (a mutex no other writer touches), and a scrape adds the shards up.
//! Under load every runtime worker bumps the same counters; with one shared atomic or lock
//! the cache line holding it moves between cores on every request.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Shards per metric: threads beyond that share shards (still correct, a little slower).
const SHARDS: usize = 32;

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_SHARD: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// One cache line (or two, for adjacent-line prefetchers) per shard.
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

/// One `T` per thread (threads beyond [`SHARDS`] share), each behind a mutex that only
/// its thread takes, except a reader going through all of them.
pub(crate) struct Shards<T>(Box<[Padded<Mutex<T>>]>);

impl<T: Default> Default for Shards<T> {
    fn default() -> Self {
        Self((0..SHARDS).map(|_| Padded::default()).collect())
    }
}

impl<T> Shards<T> {
    /// The calling thread's shard.
    pub(crate) fn mine(&self) -> MutexGuard<'_, T> {
        let i = THREAD_SHARD.with(|i| *i);
        // A panic while recording leaves at worst one observation half counted.
        self.0[i].0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every shard, one after the other.
    pub(crate) fn each(&self) -> impl Iterator<Item = MutexGuard<'_, T>> {
        self.0
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A monotonic counter (`<name>_total`). Clones share the count.
#[derive(Clone, Default)]
pub struct Counter(Arc<Shards<u64>>);

impl Counter {
    pub fn inc(&self) {
        *self.0.mine() += 1;
    }

    pub fn get(&self) -> u64 {
        self.0.each().map(|n| *n).sum()
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Counter").field(&self.get()).finish()
    }
}

impl EncodeMetric for Counter {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// What a histogram has seen for one label set.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    sum: f64,
    count: u64,
    /// Per bucket (not cumulative); the last one is `+Inf`.
    buckets: Vec<u64>,
}

/// A family of histograms keyed by a label set `L`, all with the same bucket bounds.
/// Label sets are compared linearly: meant for the few dozen series of a service's
/// routes, methods and statuses. Clones share the histograms.
pub struct HistogramFamily<L>(Arc<FamilyInner<L>>);

struct FamilyInner<L> {
    bounds: Vec<f64>,
    shards: Shards<Vec<(L, Observed)>>,
}

impl<L> Clone for HistogramFamily<L> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<L: PartialEq + Clone> HistogramFamily<L> {
    /// `bounds` are the upper bounds of the buckets, ascending; a `+Inf` bucket follows.
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        Self(Arc::new(FamilyInner {
            bounds: bounds.into_iter().collect(),
            shards: Shards::default(),
        }))
    }

    /// Adds `value` to the histogram of `labels`. `labels` is cloned only the first time
    /// this thread sees it.
    pub fn observe(&self, labels: &L, value: f64) {
        let bounds = &self.0.bounds;
        let bucket = bounds
            .iter()
            .position(|upper| value <= *upper)
            .unwrap_or(bounds.len());
        let mut shard = self.0.shards.mine();
        let observed = match shard.iter().position(|(l, _)| l == labels) {
            Some(i) => &mut shard[i].1,
            None => {
                shard.push((
                    labels.clone(),
                    Observed {
                        sum: 0.0,
                        count: 0,
                        buckets: vec![0; bounds.len() + 1],
                    },
                ));
                &mut shard.last_mut().expect("just pushed").1
            }
        };
        observed.sum += value;
        observed.count += 1;
        observed.buckets[bucket] += 1;
    }

    /// Every label set seen, with its shards added up, in first-seen order per shard.
    fn merged(&self) -> Vec<(L, Observed)> {
        let mut all: Vec<(L, Observed)> = Vec::new();
        for shard in self.0.shards.each() {
            for (labels, seen) in shard.iter() {
                match all.iter_mut().find(|(l, _)| l == labels) {
                    Some((_, total)) => {
                        total.sum += seen.sum;
                        total.count += seen.count;
                        for (t, s) in total.buckets.iter_mut().zip(&seen.buckets) {
                            *t += s;
                        }
                    }
                    None => all.push((labels.clone(), seen.clone())),
                }
            }
        }
        all
    }
}

impl<L> fmt::Debug for HistogramFamily<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistogramFamily")
            .field("bounds", &self.0.bounds)
            .finish_non_exhaustive()
    }
}

impl<L: EncodeLabelSet + PartialEq + Clone> EncodeMetric for HistogramFamily<L> {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (labels, seen) in self.merged() {
            // prometheus-client writes `+Inf` for an upper bound of f64::MAX.
            let buckets: Vec<(f64, u64)> = self
                .0
                .bounds
                .iter()
                .copied()
                .chain(std::iter::once(f64::MAX))
                .zip(seen.buckets)
                .collect();
            encoder
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(seen.sum, seen.count, &buckets, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Labels {
        route: &'static str,
        status: u16,
    }

    fn text(register: impl FnOnce(&mut Registry)) -> String {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn encodes_like_prometheus_client_across_threads() {
        let bounds = [0.001, 0.01, 0.1];
        let ours = HistogramFamily::new(bounds);
        let theirs: Family<Labels, Histogram> =
            Family::new_with_constructor(|| Histogram::new([0.001, 0.01, 0.1]));
        let a = Labels {
            route: "/{code}",
            status: 302,
        };
        let b = Labels {
            route: "/healthz",
            status: 200,
        };
        // Values exactly representable in binary, so the sums match whatever the order.
        let values = [0.000_976_562_5, 0.0625, 0.5, 0.000_488_281_25, 0.25];
        std::thread::scope(|s| {
            for t in 0..4 {
                let (ours, theirs, a, b) = (&ours, &theirs, &a, &b);
                s.spawn(move || {
                    for (i, v) in values.iter().enumerate() {
                        let labels = if (i + t) % 2 == 0 { a } else { b };
                        ours.observe(labels, *v);
                        theirs.get_or_create(labels).observe(*v);
                    }
                });
            }
        });
        let ours_text = text(|r| r.register("req", "Requests", ours.clone()));
        let theirs_text = text(|r| r.register("req", "Requests", theirs.clone()));
        let sorted = |t: &str| {
            let mut lines: Vec<String> = t.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        assert_eq!(sorted(&ours_text), sorted(&theirs_text), "{ours_text}");
        assert!(ours_text.contains(r#"req_count{route="/{code}",status="302"} 10"#));
    }

    #[test]
    fn counters_add_up_every_thread() {
        let counter = Counter::default();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| (0..1000).for_each(|_| counter.inc()));
            }
        });
        assert_eq!(counter.get(), 8000);
        let out = text(|r| r.register("hits", "Hits", counter.clone()));
        assert!(out.contains("hits_total 8000"), "{out}");
    }
}
