//! The dashboard and the alert rules only use metrics the service really
//! exports: after a mint and a redemption, every metric name in
//! `deploy/grafana/issuance-bot.json` and `deploy/prometheus/alerts.yml`
//! is served by `/metrics` with HELP text, and every histogram is a
//! Prometheus histogram (never a summary).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::harness::{Env, Options, TIMEOUT};
use crate::redemption::{mint, redeem, shares, wait_for_state};

/// Series Prometheus itself adds to every scrape target.
const SCRAPE_GENERATED: &[&str] = &["up"];

/// PromQL words that look like identifiers but are not metric names.
const PROMQL_KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    // Aggregations, also written `sum by (le) (...)`.
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The metric names a PromQL expression reads: identifiers that are not
/// functions or aggregations (followed by `(`), keywords, label names
/// (inside `{}` or the `by (...)`-style lists), durations (`[...]`),
/// strings or numbers.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // The last identifier, when it introduced a label list.
    let mut label_list_pending = false;
    let mut depth_of_label_list: Option<usize> = None;
    let mut depth = 0_usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' => {
                while i < chars.len() && chars[i] != '}' {
                    if chars[i] == '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            if chars[i] == '\\' {
                                i += 1;
                            }
                            i += 1;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '[' => {
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
                i += 1;
            }
            '(' => {
                depth += 1;
                if label_list_pending {
                    depth_of_label_list = Some(depth);
                    label_list_pending = false;
                }
                i += 1;
            }
            ')' => {
                if depth_of_label_list == Some(depth) {
                    depth_of_label_list = None;
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            c if c.is_ascii_digit()
                || (c == '.'
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                // A number (1e16, 1e-9, 0.99) or a duration (5m).
                i += 1;
                while let Some(&d) = chars.get(i) {
                    let exponent_sign = matches!(d, '+' | '-')
                        && matches!(chars[i - 1], 'e' | 'E')
                        && chars.get(i + 1).is_some_and(char::is_ascii_digit);
                    if d.is_ascii_alphanumeric()
                        || d == '.'
                        || d == '_'
                        || exponent_sign
                    {
                        i += 1;
                    } else {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '_'
                        || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|ch| !ch.is_whitespace());
                let lower = word.to_ascii_lowercase();
                if matches!(
                    lower.as_str(),
                    "by" | "without"
                        | "on"
                        | "ignoring"
                        | "group_left"
                        | "group_right"
                ) {
                    label_list_pending = next == Some(&'(');
                } else if depth_of_label_list.is_some()
                    || next == Some(&'(')
                    || PROMQL_KEYWORDS.contains(&lower.as_str())
                {
                    // A label name, a function or a keyword.
                } else {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full)
        .unwrap_or_else(|error| panic!("{}: {error}", full.display()))
}

/// Every `expr` of the alert rules (one line each, as the file keeps
/// them: a multi-line expression would be missed, so that is refused).
fn alert_exprs() -> Vec<String> {
    let text = repo_file("deploy/prometheus/alerts.yml");
    let exprs: Vec<String> = text
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("expr:"))
        .map(|expr| expr.trim().to_owned())
        .collect();
    let alerts = text
        .lines()
        .filter(|line| line.trim_start().starts_with("- alert:"))
        .count();
    assert_eq!(exprs.len(), alerts, "one single-line expr per alert");
    assert!(
        exprs.iter().all(|expr| !expr.is_empty()
            && !expr.starts_with('|')
            && !expr.starts_with('>')),
        "multi-line expr in alerts.yml: {exprs:?}"
    );
    exprs
}

/// Every `expr` anywhere in the dashboard's panels.
fn dashboard_exprs() -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", Value::String(expr)) => out.push(expr.clone()),
                        _ => walk(value, out),
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, out);
                }
            }
            _ => {}
        }
    }
    let dashboard: Value =
        serde_json::from_str(&repo_file("deploy/grafana/issuance-bot.json"))
            .unwrap();
    let mut exprs = Vec::new();
    walk(&dashboard, &mut exprs);
    assert!(exprs.len() > 20, "too few panel queries: {exprs:?}");
    exprs
}

/// `# TYPE` and `# HELP` of a Prometheus text exposition.
struct Exposition {
    types: BTreeMap<String, String>,
    helps: BTreeMap<String, String>,
    text: String,
}

impl Exposition {
    fn parse(text: String) -> Self {
        let mut types = BTreeMap::new();
        let mut helps = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                types.insert(name.to_owned(), kind.to_owned());
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                helps.insert(name.to_owned(), help.to_owned());
            }
        }
        Self { types, helps, text }
    }

    /// The exported metric family a query name belongs to (histogram
    /// series carry `_bucket`/`_sum`/`_count`).
    fn family<'a>(&self, name: &'a str) -> Option<&'a str> {
        if self.types.contains_key(name) {
            return Some(name);
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            name.strip_suffix(suffix).filter(|base| {
                self.types
                    .get(*base)
                    .is_some_and(|kind| kind == "histogram")
            })
        })
    }

    /// The value of the sample line starting with `series ` (exact
    /// series text, labels included).
    fn value(&self, series: &str) -> Option<f64> {
        self.text.lines().find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|value| value.trim().parse().ok())
        })
    }
}

async fn scrape(url: &str) -> Exposition {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    Exposition::parse(response.text().await.unwrap())
}

#[test]
fn promql_names_are_found_and_labels_functions_and_numbers_are_not() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (instance, le) (rate(http_request_duration_seconds_bucket{route=~"/a|b", x="y}"}[5m]))) > 1e16 and on (instance) changes(max by (instance) (chain_head_block)[15m:1m]) > 0 unless up == 0 or min(x:y_z) / 1e-9"#,
    );
    let expected: BTreeSet<String> = [
        "http_request_duration_seconds_bucket",
        "chain_head_block",
        "up",
        "x:y_z",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(names, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_use_only_exported_metrics_with_help_text() {
    let env = Env::start_opts(Options {
        metrics: true,
        ..Options::default()
    })
    .await;
    let url = env.metrics_url().expect("metrics listener bound");

    // One mint and one redemption, end to end.
    mint(&env, "3").await;
    let id = redeem(&env, shares("1.25")).await;
    wait_for_state(&env, &id, "completed").await;

    // The flows' own series are recorded as the drivers finish, and the
    // periodic gauges after their first pass: poll until all are there.
    let wanted = [
        "mint_duration_seconds_count",
        "redemption_duration_seconds_count",
        "redemptions_finished_total{outcome=\"completed\"}",
        "chain_wallet_balance_wei{network=\"base\"}",
        "chain_head_block{network=\"base\"}",
        "readiness_check_up{check=\"chain:base\"}",
        "flows_stuck{flow=\"redemption\",reason=\"failed\"}",
        "redemption_monitor_scanned_block{network=\"base\"}",
        "mints_open{network=\"base\"}",
        "redemptions_open{network=\"base\"}",
        "mint_step_errors_total{retryable=\"false\",network=\"base\"}",
    ];
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let exposition = loop {
        let exposition = scrape(&url).await;
        if wanted
            .iter()
            .all(|series| exposition.value(series).is_some())
        {
            break exposition;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing some of {wanted:?}:\n{}",
            exposition.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };

    // The values tell the story just driven.
    let value = |series: &str| exposition.value(series).unwrap();
    assert!(value("mint_duration_seconds_count") >= 1.0);
    assert!(value("redemption_duration_seconds_count") >= 1.0);
    assert!(value("mints_finished_total{outcome=\"completed\"}") >= 1.0);
    assert!(value("chain_wallet_balance_wei{network=\"base\"}") > 0.0);
    assert!(value("chain_head_block{network=\"base\"}") > 0.0);
    assert!(value("readiness_check_up{check=\"chain:base\"}") > 0.5);
    assert!(
        value("flows_stuck{flow=\"mint\",reason=\"failed\"}").abs()
            < f64::EPSILON
    );
    assert!(
        value("flows_stuck{flow=\"mint\",reason=\"overdue\"}").abs()
            < f64::EPSILON
    );
    // Rare counters exist before their first event.
    assert!(
        value("chain_foreign_nonce_total{network=\"base\"}").abs()
            < f64::EPSILON
    );
    // The monitor of base reports its position under its network.
    assert!(value("redemption_monitor_scanned_block{network=\"base\"}") > 0.0);

    // Every family has HELP text, and no duration is a summary.
    for (name, kind) in &exposition.types {
        assert!(
            exposition
                .helps
                .get(name)
                .is_some_and(|help| !help.is_empty()),
            "{name} has no HELP text"
        );
        assert_ne!(kind, "summary", "{name} is a summary");
    }
    for histogram in [
        "http_request_duration_seconds",
        "mint_duration_seconds",
        "redemption_duration_seconds",
    ] {
        assert_eq!(
            exposition.types.get(histogram).map(String::as_str),
            Some("histogram"),
            "{histogram}"
        );
    }

    // Every name the dashboard and the alerts read is exported.
    let mut used: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let alerts = alert_exprs();
    let panels = dashboard_exprs();
    for (source, exprs) in
        [("alerts.yml", &alerts), ("issuance-bot.json", &panels)]
    {
        for expr in exprs {
            for name in metric_names(expr) {
                used.entry(name).or_default().push(source);
            }
        }
    }
    assert!(used.len() > 20, "{used:?}");
    let missing: Vec<_> = used
        .iter()
        .filter(|(name, _)| {
            !SCRAPE_GENERATED.contains(&name.as_str())
                && exposition.family(name).is_none()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "used but not exported: {missing:?}\n{}",
        exposition.text
    );
    env.stop().await;
}
