//! `enroll status --summary`: the pipeline's counters ([`enroll_core::metrics`]) in one view.
//!
//! - Locally they live in the memory of the running `enroll dev`, which serves them on its admin
//!   listener (`GET /admin/metrics`, token-guarded) and prints them once a minute
//!   ([`MinuteLine`]).
//! - For a deployed stack they come from CloudWatch: one `GetMetricData` call over the last
//!   hours, of the `Enroll` metrics the functions wrote as Embedded Metric Format, plus each of
//!   the stack's functions' own `AWS/Lambda` `Errors` (by function name, `<stack>-ingest`, ...).
//!
//! Neither asks anything of Notion: counting costs no request of the Notion budget.

use anyhow::Context;
use aws_sdk_cloudwatch::primitives::DateTime as AwsDateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric as CwMetric, MetricDataQuery, MetricStat};
use enroll_core::metrics::{Function, Latency, Metric, Reason, Summary, Unit, NAMESPACE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What `enroll status --summary` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryReport {
    #[serde(flatten)]
    pub summary: Summary,
    /// A stack's functions' `Errors` over the same hours, by stage; empty locally.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lambda_errors: BTreeMap<String, u64>,
}

pub use enroll_core::metrics::this_process;

/// The summary line `enroll dev` prints each minute, only when a counter changed.
#[derive(Debug, Default)]
pub struct MinuteLine {
    last: Option<Summary>,
}

impl MinuteLine {
    /// The line to print now, if anything changed since the last one (or since the start).
    pub fn if_changed(&mut self) -> Option<String> {
        let now = this_process();
        let before = self
            .last
            .take()
            .unwrap_or_else(|| Summary::empty(now.scope.clone()));
        let changed = now != before;
        let line = changed.then(|| format!("metrics: {}", now.line()));
        self.last = Some(now);
        line
    }
}

/// One metric read from CloudWatch, and where its value goes in the summary.
enum Read {
    Count(Function, Metric, Option<Reason>),
    Access(&'static str),
    LambdaErrors(Function),
}

fn dimension(name: &str, value: &str) -> Dimension {
    Dimension::builder().name(name).value(value).build()
}

fn query(
    id: usize,
    namespace: &str,
    name: &str,
    dims: Vec<Dimension>,
    period: i32,
    stat: &str,
) -> MetricDataQuery {
    let metric = CwMetric::builder()
        .namespace(namespace)
        .metric_name(name)
        .set_dimensions(Some(dims))
        .build();
    MetricDataQuery::builder()
        .id(format!("q{id}"))
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(period)
                .stat(stat)
                .build(),
        )
        .return_data(true)
        .build()
}

/// Every query the summary needs: each counted metric from each function that emits it (by
/// reason for refusals), time to access as p50, p99, maximum and count, and the functions'
/// errors. The `Function` dimension is the stage name; the stack's functions are
/// `<stack>-<stage>`. With a tenant, enroll's own metrics are read with its `Tenant` dimension
/// as well (the functions publish a tenant's figures with and without it); the functions'
/// errors stay the whole stack's, as Lambda counts them.
fn queries(stack: &str, period: i32, tenant: Option<&str>) -> Vec<(Read, MetricDataQuery)> {
    let mut out = Vec::new();
    let mut push = |read: Read, ns: &str, name: &str, mut dims: Vec<Dimension>, stat: &str| {
        if let (Some(t), true) = (tenant, ns == NAMESPACE) {
            dims.push(dimension("Tenant", t));
        }
        let q = query(out.len(), ns, name, dims, period, stat);
        out.push((read, q));
    };
    for m in Metric::ALL {
        if m.unit() != Unit::Count {
            continue;
        }
        for f in m.emitted_by() {
            let function = dimension("Function", f.as_str());
            if m == Metric::WebhooksRejected {
                for r in Reason::ALL {
                    let dims = vec![function.clone(), dimension("Reason", r.as_str())];
                    push(
                        Read::Count(*f, m, Some(r)),
                        NAMESPACE,
                        m.name(),
                        dims,
                        "Sum",
                    );
                }
            } else {
                push(
                    Read::Count(*f, m, None),
                    NAMESPACE,
                    m.name(),
                    vec![function],
                    "Sum",
                );
            }
        }
    }
    let access = Metric::TimeToAccessMs;
    for stat in ["p50", "p99", "Maximum", "SampleCount"] {
        let dims = vec![dimension("Function", Function::Provision.as_str())];
        push(Read::Access(stat), NAMESPACE, access.name(), dims, stat);
    }
    for f in Function::ALL {
        let dims = vec![dimension(
            "FunctionName",
            &format!("{stack}-{}", f.as_str()),
        )];
        push(Read::LambdaErrors(f), "AWS/Lambda", "Errors", dims, "Sum");
    }
    out
}

/// A stack's counters over the last `hours`, from CloudWatch: one tenant's when given.
pub async fn from_cloudwatch(
    sdk: &aws_config::SdkConfig,
    stack: &str,
    hours: u32,
    tenant: Option<&str>,
) -> anyhow::Result<SummaryReport> {
    let hours = hours.clamp(1, 24 * 14);
    let client = aws_sdk_cloudwatch::Client::new(sdk);
    let end = chrono::Utc::now().timestamp();
    let start = end - i64::from(hours) * 3600;
    // One period over the whole window: one datapoint per series, percentiles exact over it.
    let period = (hours * 3600) as i32;
    let reads = queries(stack, period, tenant);
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut next: Option<String> = None;
    loop {
        let out = client
            .get_metric_data()
            .set_metric_data_queries(Some(reads.iter().map(|(_, q)| q.clone()).collect()))
            .start_time(AwsDateTime::from_secs(start))
            .end_time(AwsDateTime::from_secs(end))
            .set_next_token(next.take())
            .send()
            .await
            .with_context(|| format!("reading the metrics of stack `{stack}` (GetMetricData)"))?;
        for r in out.metric_data_results() {
            if let Some(id) = r.id() {
                values
                    .entry(id.to_owned())
                    .or_default()
                    .extend_from_slice(r.values());
            }
        }
        match out.next_token() {
            Some(t) if !t.is_empty() => next = Some(t.to_owned()),
            _ => break,
        }
    }
    let mut report = assemble(stack, hours, &reads, &values);
    if let Some(t) = tenant {
        report.summary.scope = format!("tenant {t} of {}", report.summary.scope);
    }
    Ok(report)
}

fn assemble(
    stack: &str,
    hours: u32,
    reads: &[(Read, MetricDataQuery)],
    values: &BTreeMap<String, Vec<f64>>,
) -> SummaryReport {
    let mut summary = Summary::empty(format!("stack {stack}, last {hours} h (CloudWatch)"));
    let mut access: BTreeMap<&str, f64> = BTreeMap::new();
    let mut lambda_errors = BTreeMap::new();
    for (read, q) in reads {
        let found = q.id().and_then(|id| values.get(id));
        let sum: f64 = found.map_or(0.0, |v| v.iter().sum());
        match read {
            Read::Count(f, m, r) => summary.add(f.as_str(), *m, *r, sum.round() as u64),
            Read::Access(stat) => {
                // Periods are the whole window, so there is at most one value; with more
                // (a window that straddles a boundary) the largest is the cautious reading.
                let v = found.map_or(0.0, |v| {
                    if *stat == "SampleCount" {
                        v.iter().sum()
                    } else {
                        v.iter().copied().fold(0.0, f64::max)
                    }
                });
                access.insert(stat, v);
            }
            Read::LambdaErrors(f) => {
                lambda_errors.insert(f.as_str().to_owned(), sum.round() as u64);
            }
        }
    }
    let count = access.get("SampleCount").copied().unwrap_or(0.0).round() as u64;
    if count > 0 {
        summary.time_to_access_ms = Some(Latency {
            count,
            p50: access.get("p50").copied().unwrap_or(0.0),
            p99: access.get("p99").copied().unwrap_or(0.0),
            max: access.get("Maximum").copied().unwrap_or(0.0),
        });
    }
    SummaryReport {
        summary,
        lambda_errors,
    }
}

/// The plain-text view: one line per group of counters.
pub fn print(report: &SummaryReport) {
    let s = &report.summary;
    let t = |m: Metric| s.total(m);
    println!("counters        {}", s.scope);
    let reasons: Vec<String> = s
        .rejected_by_reason
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    println!(
        "webhooks        {} accepted, {} rejected ({})",
        t(Metric::WebhooksAccepted),
        t(Metric::WebhooksRejected),
        reasons.join(", ")
    );
    println!(
        "events          {} applied, {} duplicate, {} parked",
        t(Metric::EventsApplied),
        t(Metric::EventsDuplicate),
        t(Metric::EventsParked)
    );
    println!(
        "SCIM            {} requests, {} throttled (429/529), {} auth failures (401/403)",
        t(Metric::ScimRequests),
        t(Metric::ScimThrottled),
        t(Metric::ScimAuthFailures)
    );
    println!(
        "Notion API      {} requests; {} records aligned",
        t(Metric::NotionApiRequests),
        t(Metric::RecordsAligned)
    );
    println!(
        "expiry          {} buyers reconciled",
        t(Metric::ExpiryReconciled)
    );
    match &s.time_to_access_ms {
        Some(l) => println!(
            "time to access  p50 {} ms, p99 {} ms, max {} ms, over {} purchases",
            l.p50.round(),
            l.p99.round(),
            l.max.round(),
            l.count
        ),
        None => println!("time to access  no purchase reached access yet"),
    }
    if !report.lambda_errors.is_empty() {
        let errors: Vec<String> = report
            .lambda_errors
            .iter()
            .map(|(f, n)| format!("{f} {n}"))
            .collect();
        println!("function errors {}", errors.join(", "));
    }
    if t(Metric::ScimAuthFailures) > 0 {
        println!(
            "                SCIM refused the token: it dies when the workspace owner who made it \
             leaves or changes role; see the README's runbook to rotate it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudwatch_results_fill_the_summary() {
        let reads = queries("shop", 86_400, None);
        let id_of = |want: &dyn Fn(&Read) -> bool| {
            reads
                .iter()
                .find(|(r, _)| want(r))
                .and_then(|(_, q)| q.id())
                .unwrap()
                .to_owned()
        };
        let mut values = BTreeMap::new();
        values.insert(
            id_of(&|r| {
                matches!(
                    r,
                    Read::Count(Function::Ingest, Metric::WebhooksAccepted, None)
                )
            }),
            vec![3.0, 2.0],
        );
        values.insert(
            id_of(&|r| {
                matches!(
                    r,
                    Read::Count(_, Metric::WebhooksRejected, Some(Reason::Stale))
                )
            }),
            vec![1.0],
        );
        values.insert(id_of(&|r| matches!(r, Read::Access("p99"))), vec![900.0]);
        values.insert(
            id_of(&|r| matches!(r, Read::Access("SampleCount"))),
            vec![4.0],
        );
        values.insert(
            id_of(&|r| matches!(r, Read::LambdaErrors(Function::Align))),
            vec![2.0],
        );
        let report = assemble("shop", 24, &reads, &values);
        assert_eq!(report.summary.total(Metric::WebhooksAccepted), 5);
        assert_eq!(report.summary.rejected_by_reason["stale"], 1);
        let access = report.summary.time_to_access_ms.unwrap();
        assert_eq!((access.count, access.p99), (4, 900.0));
        assert_eq!(report.lambda_errors["align"], 2);
        // Every query names the stack's own function for AWS/Lambda and a stage for Enroll.
        assert!(
            reads.len() < 500,
            "one GetMetricData call holds at most 500 queries"
        );
        let lambda = reads
            .iter()
            .filter_map(|(_, q)| q.metric_stat()?.metric())
            .filter(|m| m.namespace() == Some("AWS/Lambda"))
            .flat_map(|m| m.dimensions().iter().filter_map(|d| d.value()))
            .collect::<Vec<_>>();
        assert_eq!(
            lambda,
            [
                "shop-ingest",
                "shop-provision",
                "shop-align",
                "shop-expire",
                "shop-notify"
            ]
        );
    }

    #[test]
    fn a_tenants_summary_reads_its_dimension_and_the_stacks_errors() {
        let dims = |reads: &[(Read, MetricDataQuery)], ns: &str| -> Vec<Vec<String>> {
            reads
                .iter()
                .filter_map(|(_, q)| q.metric_stat()?.metric())
                .filter(|m| m.namespace() == Some(ns))
                .map(|m| {
                    m.dimensions()
                        .iter()
                        .filter_map(|d| d.name().map(str::to_owned))
                        .collect()
                })
                .collect()
        };
        let reads = queries("shop", 3600, Some("acme"));
        assert!(dims(&reads, NAMESPACE)
            .iter()
            .all(|d| d.contains(&"Tenant".to_owned())));
        assert!(dims(&reads, "AWS/Lambda")
            .iter()
            .all(|d| !d.contains(&"Tenant".to_owned())));
        let none = queries("shop", 3600, None);
        assert!(dims(&none, NAMESPACE)
            .iter()
            .all(|d| !d.contains(&"Tenant".to_owned())));
    }
}
