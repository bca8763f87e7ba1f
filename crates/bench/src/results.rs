//! Benchmark results: one JSON file per benchmark under `bench/results/`, and the table
//! printed at the end of a run.

use std::path::Path;

use serde::Serialize;

/// One line of the summary table: a measured figure, optionally against a baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub bench: String,
    pub metric: String,
    pub value: f64,
    pub unit: String,
    /// The same figure for the baseline/ceiling, measured in the same run.
    pub baseline: Option<f64>,
    /// value / baseline (or baseline / value for latencies, so higher is better).
    pub ratio: Option<f64>,
    /// The target, in words (`ratio >= 0.8`, `< 5 ms`).
    pub target: Option<String>,
    pub pass: Option<bool>,
}

impl Row {
    pub fn new(bench: &str, metric: &str, value: f64, unit: &str) -> Self {
        Self {
            bench: bench.into(),
            metric: metric.into(),
            value,
            unit: unit.into(),
            baseline: None,
            ratio: None,
            target: None,
            pass: None,
        }
    }

    /// Throughput against a baseline: ratio = value / baseline, target `ratio >= min`.
    pub fn vs(mut self, baseline: f64, min_ratio: Option<f64>) -> Self {
        let ratio = if baseline > 0.0 {
            self.value / baseline
        } else {
            0.0
        };
        self.baseline = Some(baseline);
        self.ratio = Some(ratio);
        if let Some(min) = min_ratio {
            self.target = Some(format!("ratio >= {min}"));
            self.pass = Some(ratio >= min);
        }
        self
    }

    /// A cost against a baseline: ratio = value / baseline, target `ratio <= max`.
    pub fn vs_at_most(mut self, baseline: f64, max_ratio: f64) -> Self {
        self = self.vs(baseline, None);
        let ratio = self.ratio.unwrap_or(f64::INFINITY);
        self.target = Some(format!("ratio <= {max_ratio}"));
        self.pass = Some(baseline > 0.0 && ratio <= max_ratio);
        self
    }

    /// An absolute lower bound, e.g. a ratio computed elsewhere >= 0.8.
    pub fn at_least(mut self, min: f64) -> Self {
        self.target = Some(format!(">= {min}"));
        self.pass = Some(self.value >= min);
        self
    }

    /// An absolute upper bound, e.g. p99 < 5 ms.
    pub fn below(mut self, max: f64) -> Self {
        self.target = Some(format!("< {max} {}", self.unit));
        self.pass = Some(self.value < max);
        self
    }

    /// An exact expected value, e.g. 0 writes.
    pub fn equals(mut self, want: f64) -> Self {
        self.target = Some(format!("= {want}"));
        self.pass = Some(self.value == want);
        self
    }
}

/// The machine a run was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub os: String,
    pub kernel: String,
    pub rustc: String,
    /// 1, 5 and 15 minute load averages when the results were written: other work on the
    /// machine shows here.
    pub load_average: String,
}

impl Machine {
    pub fn describe() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default();
        let mem_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|s| s.trim_matches('"').to_string())
            .unwrap_or_default();
        let cmd = |c: &str, a: &str| {
            std::process::Command::new(c)
                .arg(a)
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        Self {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            os,
            kernel: cmd("uname", "-r"),
            rustc: cmd("rustc", "-V"),
            load_average: read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// Writes `bench/results/<name>.json` with the machine, the time, the summary rows and the
/// benchmark's own details.
pub fn write_json(
    dir: &Path,
    name: &str,
    rows: &[Row],
    details: serde_json::Value,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let doc = serde_json::json!({
        "bench": name,
        "measured_at": chrono::Utc::now().to_rfc3339(),
        "machine": Machine::describe(),
        "rows": rows,
        "details": details,
    });
    let text = serde_json::to_string_pretty(&doc).expect("results serialize");
    std::fs::write(dir.join(format!("{name}.json")), text + "\n")
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The summary table, one line per row.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "bench", "metric", "value", "baseline", "ratio", "target", "result",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.bench.clone(),
                r.metric.clone(),
                format!("{} {}", fmt_num(r.value), r.unit),
                r.baseline.map(fmt_num).unwrap_or_else(|| "-".into()),
                r.ratio
                    .map(|x| format!("{x:.2}"))
                    .unwrap_or_else(|| "-".into()),
                r.target.clone().unwrap_or_else(|| "-".into()),
                match r.pass {
                    Some(true) => "ok".into(),
                    Some(false) => "MISSED".into(),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for c in &cells {
        for (w, s) in widths.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |c: &[String]| {
        c.iter()
            .zip(widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let mut out = line(&header.map(String::from));
    out.push('\n');
    out.push_str(&widths.map(|w| "-".repeat(w)).join("-|-"));
    for c in &cells {
        out.push('\n');
        out.push_str(&line(c));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_targets() {
        let r = Row::new("redirect", "rps", 8000.0, "req/s").vs(10000.0, Some(0.8));
        assert_eq!(r.ratio, Some(0.8));
        assert_eq!(r.pass, Some(true));
        let r = Row::new("redirect", "cpu", 11.0, "µs").vs_at_most(10.0, 1.15);
        assert_eq!(r.pass, Some(true));
        let r = Row::new("redirect", "cpu", 12.0, "µs").vs_at_most(10.0, 1.15);
        assert_eq!(r.pass, Some(false));
        let r = Row::new("redirect", "p99", 6.5, "ms").below(5.0);
        assert_eq!(r.pass, Some(false));
        let t = table(&[r, Row::new("op", "writes", 0.0, "").equals(0.0)]);
        assert!(t.contains("MISSED") && t.contains("= 0"), "{t}");
        assert_eq!(t.lines().count(), 4);
    }
}
