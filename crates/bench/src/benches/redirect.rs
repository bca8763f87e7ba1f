//! Redirect throughput and latency: url-api (release, events published to a tansu broker
//! process, cache warm) against the bare axum baseline, same load generator, same
//! connections, same run. Two cases against the same baseline: plain links, and links
//! with redirect rules and query forwarding on the path (see [`super::redirect_rules`]).
//! Then link creation on the same url-api.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::{redirect_rules, BenchEnv};
use crate::loadgen::{self, LoadReport, LoadSpec, RequestFactory};
use crate::procs::{cpu_time, free_port, metric_sum, metric_sum_matching, ServiceSpec};
use crate::results::Row;
use crate::stack::{UrlApi, API_KEY};
use crate::tansu::Tansu;
use crate::wrk::Wrk;

pub struct RedirectOpts {
    pub connections: usize,
    pub links: usize,
    pub create_connections: usize,
    /// `taskset -c` CPU list for the servers (url-api, baseline), or None.
    pub server_cpus: Option<String>,
    /// Alternating baseline/url-api rounds.
    pub rounds: usize,
    /// A name for a non-default layout (`pinned`): it tags the rows and names the JSON.
    pub layout: Option<String>,
    /// GeoIP country database for url-api; without it the rules case is not run (its
    /// country rules could not be evaluated).
    pub geoip_db: Option<PathBuf>,
}

/// What one case's load generators send.
struct Load {
    wrk: Wrk,
    request: RequestFactory,
}

/// The round with the median throughput (its latencies come with it).
fn median_round(rounds: &[LoadReport]) -> LoadReport {
    let mut sorted = rounds.to_vec();
    sorted.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    sorted[sorted.len() / 2].clone()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// One load round by `generator` against `target`, and the CPU time each server-side
/// process (`pids`) spent on it per request, in microseconds (warm-up included, at the
/// round's measured rate).
async fn measured_round(
    generator: Generator,
    load: &Load,
    target: SocketAddr,
    opts: &RedirectOpts,
    env: &BenchEnv,
    pids: &[u32],
) -> anyhow::Result<(LoadReport, Vec<f64>)> {
    let cpu = || -> Vec<Duration> {
        pids.iter()
            .map(|p| cpu_time(*p).unwrap_or_default())
            .collect()
    };
    let before = cpu();
    let report = match generator {
        Generator::BuiltIn => {
            loadgen::run(redirect_spec(
                target,
                load.request.clone(),
                opts.connections,
                env,
            ))
            .await?
        }
        Generator::Wrk => {
            load.wrk
                .run(target, opts.connections, env.warmup, env.duration)
                .await?
        }
    };
    let window = env.warmup + env.duration;
    let requests = report.rps * window.as_secs_f64();
    let per_request_us = cpu()
        .iter()
        .zip(&before)
        .map(|(after, before)| {
            let spent = after.saturating_sub(*before).as_secs_f64();
            if requests > 0.0 {
                spent * 1e6 / requests
            } else {
                0.0
            }
        })
        .collect();
    Ok((report, per_request_us))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generator {
    BuiltIn,
    Wrk,
}

impl Generator {
    fn name(self) -> &'static str {
        match self {
            Self::BuiltIn => "built-in",
            Self::Wrk => "wrk",
        }
    }
}

/// Every round of one load generator in one case: both sides, their ratios and CPU costs.
struct Side {
    generator: Generator,
    /// The case's label in metric names ("" for plain links).
    case: &'static str,
    /// Target for the median pair ratio.
    min_ratio: f64,
    /// Target for server CPU per request against the baseline's, if any.
    max_cpu_ratio: Option<f64>,
    base: Vec<LoadReport>,
    svc: Vec<LoadReport>,
    ratios: Vec<f64>,
    base_cpu: Vec<f64>,
    api_cpu: Vec<f64>,
    broker_cpu: Vec<f64>,
}

impl Side {
    fn new(generator: Generator) -> Self {
        Self {
            generator,
            case: "",
            min_ratio: 0.9,
            max_cpu_ratio: Some(1.15),
            base: Vec::new(),
            svc: Vec::new(),
            ratios: Vec::new(),
            base_cpu: Vec::new(),
            api_cpu: Vec::new(),
            broker_cpu: Vec::new(),
        }
    }

    /// Records one pair: the baseline's round `(report, [cpu])` and url-api's
    /// `(report, [url-api cpu, broker cpu])`.
    fn push(&mut self, round: usize, base: (LoadReport, Vec<f64>), svc: (LoadReport, Vec<f64>)) {
        let (b, b_cpu) = base;
        let (s, s_cpu) = svc;
        let ratio = if b.rps > 0.0 { s.rps / b.rps } else { 0.0 };
        let (b_cpu, a_cpu, k_cpu) = (b_cpu[0], s_cpu[0], s_cpu[1]);
        eprintln!(
            "redirect round {round} ({}{}): url-api {:.0} req/s p99 {:.2} ms {:.1} µs CPU/req \
             ({a_cpu:.1} url-api + {k_cpu:.1} broker), baseline {:.0} req/s p99 {:.2} ms \
             {b_cpu:.1} µs CPU/req, ratio {ratio:.2}",
            self.generator.name(),
            self.case,
            s.rps,
            s.p99_ms,
            a_cpu + k_cpu,
            b.rps,
            b.p99_ms
        );
        self.ratios.push(ratio);
        self.base_cpu.push(b_cpu);
        self.api_cpu.push(a_cpu);
        self.broker_cpu.push(k_cpu);
        self.base.push(b);
        self.svc.push(s);
    }

    fn svc_cpu(&self) -> Vec<f64> {
        self.api_cpu
            .iter()
            .zip(&self.broker_cpu)
            .map(|(a, k)| a + k)
            .collect()
    }

    fn rows(&self, bench: &str, conns: usize) -> Vec<Row> {
        let g = format!("{}{}", self.generator.name(), self.case);
        let svc = median_round(&self.svc);
        let base = median_round(&self.base);
        vec![
            Row::new(
                bench,
                &format!("rps ratio @{conns} conns, {g} (median of pairs)"),
                median(&self.ratios),
                "x",
            )
            .at_least(self.min_ratio),
            Row::new(bench, &format!("rps (median round), {g}"), svc.rps, "req/s")
                .vs(base.rps, None),
            Row::new(bench, &format!("p50, {g}"), svc.p50_ms, "ms"),
            Row::new(bench, &format!("p99, {g}"), svc.p99_ms, "ms").below(5.0),
            Row::new(bench, &format!("p99 (baseline), {g}"), base.p99_ms, "ms"),
            Row::new(bench, &format!("max, {g}"), svc.max_ms, "ms"),
            {
                let row = Row::new(
                    bench,
                    &format!("server CPU per request (url-api + broker), {g}"),
                    median(&self.svc_cpu()),
                    "µs",
                );
                let base = median(&self.base_cpu);
                match self.max_cpu_ratio {
                    Some(max) => row.vs_at_most(base, max),
                    None => row.vs(base, None),
                }
            },
            Row::new(
                bench,
                &format!("url-api CPU per request, {g}"),
                median(&self.api_cpu),
                "µs",
            ),
            Row::new(
                bench,
                &format!("errors, {g}"),
                self.svc.iter().map(|r| r.errors).sum::<u64>() as f64,
                "req",
            )
            .equals(0.0),
        ]
    }

    fn details(&self) -> serde_json::Value {
        json!({
            "generator": self.generator.name(),
            "case": if self.case.is_empty() { "plain" } else { self.case.trim_start_matches(", ") },
            "ratio_median_of_pairs": median(&self.ratios),
            "round_ratios": self.ratios,
            "cpu_us_per_request": {
                "url_api_and_broker": self.svc_cpu(),
                "url_api": self.api_cpu,
                "broker": self.broker_cpu,
                "baseline": self.base_cpu,
            },
            "url_api_median": median_round(&self.svc),
            "baseline_median": median_round(&self.base),
            "url_api_rounds": self.svc,
            "baseline_rounds": self.base,
        })
    }
}

fn long_url(i: usize) -> String {
    format!("https://example.com/articles/{i}?ref=bench")
}

fn redirect_spec(
    target: SocketAddr,
    request: RequestFactory,
    connections: usize,
    env: &BenchEnv,
) -> LoadSpec {
    LoadSpec {
        target,
        connections,
        warmup: env.warmup,
        duration: env.duration,
        request,
        expect: StatusCode::FOUND,
    }
}

pub async fn run(
    env: &BenchEnv,
    database_url: &str,
    opts: &RedirectOpts,
) -> anyhow::Result<Vec<Row>> {
    let mut broker = Tansu::start(&env.log_dir).await?;
    broker.create_topic("clicks", 4).await?;
    let mut spec = UrlApi::spec(
        &env.bin_dir,
        &env.log_dir,
        database_url,
        &broker.bootstrap(),
        "http://127.0.0.1:9",
    )
    // Long enough that no entry expires during the run: the bench measures the warm path.
    .env("CACHE_TTL_SECS", "600")
    // The rules case's requests come through a loopback "proxy" with a public client
    // address; plain requests carry no X-Forwarded-For.
    .env("TRUSTED_PROXIES", "127.0.0.1/32");
    if let Some(db) = &opts.geoip_db {
        spec = spec.env("GEOIP_DB_PATH", db.display().to_string());
    }
    spec.cpus = opts.server_cpus.clone();
    let api = UrlApi::start(spec).await?;

    // Links, created through the API, then requested once each so the cache is warm.
    let mut codes = Vec::with_capacity(opts.links);
    for chunk in (0..opts.links).collect::<Vec<_>>().chunks(32) {
        let urls: Vec<String> = chunk.iter().map(|i| long_url(*i)).collect();
        let created =
            futures::future::try_join_all(urls.iter().map(|u| api.create_link(u, None))).await?;
        codes.extend(created);
    }
    for code in &codes {
        let resp = api
            .client()
            .get(api.url(&format!("/{code}")))
            .send()
            .await?;
        anyhow::ensure!(
            resp.status() == reqwest::StatusCode::FOUND,
            "warm-up GET /{code}: {}",
            resp.status()
        );
    }
    let codes = Arc::new(codes);

    // The rules case: its links, each requested once (warming the cache) and checked to
    // have gone through rules and forwarding before anything is measured.
    let ruled = match &opts.geoip_db {
        Some(_) => {
            let links = redirect_rules::create(&api, opts.links).await?;
            let matched = redirect_rules::verify(&api, &links).await?;
            eprintln!(
                "rules case: {} links with 3 rules each, {matched} sent to a matching rule's \
                 target, every Location carrying ?{}",
                links.len(),
                redirect_rules::QUERY
            );
            Some((links, matched))
        }
        None => {
            eprintln!("rules case NOT run: no GeoIP database (SHORTENER_TEST_GEOIP_DB)");
            None
        }
    };

    // The baseline serves the same codes and URLs, as its own process like url-api (the
    // ruled links with their own target: the baseline has no rules and ignores the query).
    let links_file = env.log_dir.join("baseline-links.tsv");
    let ruled_lines = ruled.iter().flat_map(|(links, _)| links.iter());
    let lines: String = codes
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c}\t{}\n", long_url(i)))
        .chain(ruled_lines.map(|l| format!("{}\t{}\n", l.code, l.long_url)))
        .collect();
    std::fs::write(&links_file, lines)?;
    let port = free_port();
    let mut bspec = ServiceSpec::new("baseline", std::env::current_exe()?, &env.log_dir)
        .arg("serve-baseline")
        .arg("--addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--links")
        .arg(links_file.display().to_string());
    bspec.cpus = opts.server_cpus.clone();
    let mut baseline = bspec.spawn()?;
    baseline
        .wait_ready(
            &format!("http://127.0.0.1:{port}/{}", "healthz"),
            Duration::from_secs(30),
        )
        .await?;

    // Alternate baseline and url-api rounds so drift in the machine's speed (other work on
    // the host, noisy neighbours) hits both sides alike. The target is judged on the
    // median of the per-pair ratios: each pair ran back to back, under the same conditions.
    // Each round runs twice, once per load generator.
    let baseline_addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let pid = |p: Option<u32>, what: &str| p.ok_or_else(|| anyhow::anyhow!("{what} has exited"));
    let svc_pids = [
        pid(api.service.pid(), "url-api")?,
        pid(broker.pid(), "tansu")?,
    ];
    let base_pids = [pid(baseline.pid(), "baseline")?];
    let plain = Load {
        wrk: Wrk::new(&env.log_dir, &codes)?,
        request: {
            let codes = codes.clone();
            Arc::new(move |n| loadgen::get(&format!("/{}", codes[n as usize % codes.len()])))
        },
    };
    let mut cases = vec![(
        plain,
        [Side::new(Generator::BuiltIn), Side::new(Generator::Wrk)],
    )];
    if let Some((links, _)) = &ruled {
        let paths = redirect_rules::paths(links);
        let load = Load {
            wrk: Wrk::with_headers(&env.log_dir, "rules", &paths, &redirect_rules::HEADERS)?,
            request: redirect_rules::requests(Arc::new(paths)),
        };
        // Issue 15's target: rules and forwarding on the path keep ≥ 0.8 of the baseline.
        let side = |generator| Side {
            case: ", rules+forwarding",
            min_ratio: 0.8,
            max_cpu_ratio: None,
            ..Side::new(generator)
        };
        cases.push((load, [side(Generator::BuiltIn), side(Generator::Wrk)]));
    }
    for round in 0..opts.rounds {
        for (load, sides) in &mut cases {
            for side in sides.iter_mut() {
                let b = measured_round(side.generator, load, baseline_addr, opts, env, &base_pids)
                    .await?;
                let s =
                    measured_round(side.generator, load, api.addr, opts, env, &svc_pids).await?;
                side.push(round, b, s);
            }
        }
    }
    baseline.terminate(Duration::from_secs(5)).await;

    // Events: every redirect (302) is published; wait up to 30 s for the queue to drain.
    let (mut redirects, mut published, mut dropped, mut failed) = (0.0, 0.0, 0.0, 0.0);
    for _ in 0..300 {
        let text = reqwest::get(api.admin_url("/metrics"))
            .await?
            .text()
            .await?;
        redirects = metric_sum_matching(
            &text,
            "http_request_duration_seconds_count",
            "status=\"302\"",
        );
        published = metric_sum(&text, "clicks_published_total").unwrap_or(0.0);
        dropped = metric_sum(&text, "clicks_dropped_total").unwrap_or(0.0);
        failed = metric_sum(&text, "clicks_delivery_failed_total").unwrap_or(0.0);
        if published + dropped + failed >= redirects {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let create = create_links(api.addr, opts.create_connections, env).await?;

    let bench = match &opts.layout {
        Some(layout) => format!("redirect ({layout})"),
        None => "redirect".to_string(),
    };
    let mut rows = Vec::new();
    for (_, sides) in &cases {
        for side in sides {
            rows.extend(side.rows(&bench, opts.connections));
        }
    }
    if ruled.is_none() {
        rows.push(
            Row::new(
                &bench,
                "rules+forwarding case run (needs SHORTENER_TEST_GEOIP_DB)",
                0.0,
                "",
            )
            .equals(1.0),
        );
    }
    rows.push(
        Row::new(&bench, "events published / redirects", published, "events")
            .vs(redirects, Some(1.0)),
    );
    rows.push(Row::new(
        &bench,
        "events dropped (queue full)",
        dropped,
        "events",
    ));
    rows.push(Row::new(
        "link-create",
        &format!("rps @{} conns", opts.create_connections),
        create.rps,
        "req/s",
    ));
    rows.push(Row::new("link-create", "p50", create.p50_ms, "ms"));
    rows.push(Row::new("link-create", "p99", create.p99_ms, "ms"));
    rows.push(Row::new(
        "link-create",
        "errors",
        create.errors as f64,
        "req",
    ));
    let name = match &opts.layout {
        Some(layout) => format!("redirect-{layout}"),
        None => "redirect".to_string(),
    };
    crate::results::write_json(
        &env.results_dir,
        &name,
        &rows,
        json!({
            "broker": "tansu 0.6 as a separate process (memory storage), topic clicks with 4 partitions",
            "server_cpus": opts.server_cpus,
            "layout": opts.layout,
            "links": opts.links,
            "rules_case": ruled.as_ref().map(|(links, matched)| json!({
                "links": links.len(),
                "rules_per_link": 3,
                "rules": "device ios, language de, country (US/CA for every 4th link: matches; else DE/AT/CH)",
                "links_sent_to_a_rule_target": matched,
                "query": redirect_rules::QUERY,
                "request_headers": redirect_rules::HEADERS.iter().map(|(n, v)| format!("{n}: {v}")).collect::<Vec<_>>(),
            })),
            "load_generators": cases.iter().flat_map(|(_, sides)| sides.iter().map(Side::details)).collect::<Vec<_>>(),
            "events": { "redirects": redirects, "published": published, "dropped": dropped, "delivery_failed": failed },
            "link_create": create,
        }),
    )?;
    drop(api);
    broker.kill().await;
    Ok(rows)
}

async fn create_links(
    target: SocketAddr,
    connections: usize,
    env: &BenchEnv,
) -> anyhow::Result<LoadReport> {
    let auth = format!("Bearer {API_KEY}");
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    Ok(loadgen::run(LoadSpec {
        target,
        connections,
        warmup: Duration::from_secs(1),
        duration: env.duration,
        request: Arc::new(move |n| {
            let body = format!(r#"{{"long_url":"https://example.org/{run_id}/page/{n}"}}"#);
            Request::post("/api/v1/links")
                .header(http::header::HOST, "127.0.0.1")
                .header(http::header::AUTHORIZATION, auth.as_str())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("valid request")
        }),
        expect: StatusCode::CREATED,
    })
    .await?)
}
