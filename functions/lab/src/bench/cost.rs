//! `cost.*`: what 1,000 purchases cost on AWS at list prices, from what the bench measured.
//!
//! Measured (by the functions part, [`super::functions`], and the provision part): each
//! function's billed duration per invocation (rounded up to 1 ms) and its cold start, its log
//! bytes, and the SQS, DynamoDB, Secrets Manager and CloudWatch requests it made through the
//! counting proxy ([`super::aws_meter`]), split into cold start and invocations; align requests
//! per purchase; the provision instances' busy time under the rate limit. Memory sizes come
//! from `template.yaml`.
//!
//! Assumed (listed in `cost.assumptions`): full batches, a number of cold starts, the SQS event
//! source's own requests, Lambda's platform log lines, item sizes from request sizes. The main
//! figure is launch day (full batches of [`BATCH`], few cold starts); `..._trickle` is the other
//! end: one purchase at a time, every invocation a cold start.

use super::report::round;
use super::{Report, BATCH, PROVISION_WORKERS};
use serde_json::{json, Value};

// AWS list prices, us-east-1, arm64, pay-as-you-go, free tiers ignored; dated 2026-11.
// https://aws.amazon.com/lambda/pricing/ (first 7.5 billion GB-seconds a month tier)
const LAMBDA_ARM64_USD_PER_GB_S: f64 = 0.000_013_333_4;
const LAMBDA_USD_PER_REQUEST: f64 = 0.20 / 1e6;
// https://aws.amazon.com/sqs/pricing/ (standard queues, each 64 KB chunk a request)
const SQS_STANDARD_USD_PER_REQUEST: f64 = 0.40 / 1e6;
// https://aws.amazon.com/dynamodb/pricing/on-demand/ (standard table class)
const DYNAMODB_USD_PER_WRITE_UNIT: f64 = 0.625 / 1e6;
const DYNAMODB_USD_PER_READ_UNIT: f64 = 0.125 / 1e6;
// https://aws.amazon.com/secrets-manager/pricing/
const SECRETS_MANAGER_USD_PER_CALL: f64 = 0.05 / 10_000.0;
const SECRETS_MANAGER_USD_PER_SECRET_MONTH: f64 = 0.40;
// https://aws.amazon.com/cloudwatch/pricing/ (standard log ingestion; custom metrics, first
// 10,000; PutMetricData requests)
const CLOUDWATCH_LOGS_USD_PER_GB: f64 = 0.50;
const CLOUDWATCH_USD_PER_METRIC_MONTH: f64 = 0.30;
const CLOUDWATCH_USD_PER_PUT_METRIC_DATA: f64 = 0.01 / 1000.0;

/// The figures are per this many purchases.
const PURCHASES: f64 = 1000.0;
/// Launch day: cold starts of each of ingest, provision and align per 1,000 purchases. A spike
/// of 2,000 purchases in a few seconds starts about ten ingest instances and two of each
/// consumer (the event sources' MaximumConcurrency); purchases spread over a day start more.
const COLD_STARTS_PER_FUNCTION: f64 = 10.0;
/// The SQS event source's own requests per batch it delivers: a ReceiveMessage and a
/// DeleteMessageBatch (the empty long polls of an idle queue are a monthly cost, not counted).
const POLLER_REQUESTS_PER_BATCH: f64 = 2.0;
/// Lambda's platform log records per invocation (start, report) in JSON log format, bytes.
const PLATFORM_LOG_BYTES: f64 = 600.0;
/// Expire runs on `rate(15 minutes)` (template.yaml's ExpireSchedule): runs in 30 days.
const EXPIRE_RUNS_PER_MONTH: f64 = 30.0 * 24.0 * 4.0;
/// Lambda's MemorySize when the template names none, MB.
const LAMBDA_DEFAULT_MEMORY_MB: u32 = 128;

const TEMPLATE: &str = include_str!("../../../../template.yaml");

/// `function`'s MemorySize in template.yaml: its own, else the Globals', else Lambda's default.
pub(super) fn memory_mb(function: &str) -> u32 {
    memory_in(TEMPLATE, function)
}

fn memory_in(template: &str, function: &str) -> u32 {
    let mut chars = function.chars();
    let resource = chars.next().map_or(String::new(), |c| {
        format!("{}{}Function", c.to_ascii_uppercase(), chars.as_str())
    });
    let (mut section, mut current) = ("", "");
    let (mut global, mut own) = (None, None);
    for line in template.lines() {
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        match line.len() - line.trim_start().len() {
            0 => (section, current) = (text.trim_end_matches(':'), ""),
            2 if section == "Resources" => current = text.trim_end_matches(':'),
            _ => {}
        }
        if let Some(v) = text.strip_prefix("MemorySize:") {
            let v = v.split('#').next().unwrap_or("").trim().parse().ok();
            if section == "Globals" {
                global = v;
            } else if current == resource {
                own = v;
            }
        }
    }
    own.or(global).unwrap_or(LAMBDA_DEFAULT_MEMORY_MB)
}

fn num(report: &Report, key: &str) -> Option<f64> {
    report.get(key).and_then(Value::as_f64)
}

/// One function's measurements, normalised per record (webhook or message) it handled.
struct Measured {
    memory_gb: f64,
    /// Billed milliseconds per record, and of a cold start.
    billed_ms_per_record: f64,
    init_billed_ms: f64,
    log_bytes_per_invocation: f64,
    sqs_per_record: f64,
    read_units_per_record: f64,
    write_units_per_record: f64,
    put_metric_per_invocation: f64,
    init_sqs: f64,
    init_dynamodb: f64,
    /// GetSecretValue per cold start.
    init_secrets: f64,
}

impl Measured {
    fn from(report: &Report, f: &str) -> Option<Measured> {
        let get = |k: &str| num(report, &format!("functions.{f}.{k}"));
        let records = get("records_per_invocation")?.max(1.0);
        Some(Measured {
            memory_gb: get("memory_mb")? / 1024.0,
            billed_ms_per_record: get("billed_ms_mean")? / records,
            init_billed_ms: get("init_ms")?.ceil(),
            log_bytes_per_invocation: get("log_bytes_per_invocation")?,
            sqs_per_record: get("sqs_requests_per_invocation")? / records,
            read_units_per_record: get("dynamodb_read_units_per_invocation")? / records,
            write_units_per_record: get("dynamodb_write_units_per_invocation")? / records,
            put_metric_per_invocation: get("put_metric_data_per_invocation")?,
            init_sqs: get("init_sqs_requests")?,
            init_dynamodb: get("init_dynamodb_requests")?,
            // Read once per cold start by lambda_env::load_config; counted when the bench's
            // secret was in moto, else taken from the code.
            init_secrets: get("init_secretsmanager_requests")?.max(1.0),
        })
    }
}

/// The dollar breakdown for [`PURCHASES`] purchases.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Breakdown {
    lambda_gb_s: f64,
    lambda_requests: f64,
    sqs: f64,
    dynamodb: f64,
    secrets_manager: f64,
    cloudwatch: f64,
}

impl Breakdown {
    fn total(&self) -> f64 {
        self.lambda_gb_s
            + self.lambda_requests
            + self.sqs
            + self.dynamodb
            + self.secrets_manager
            + self.cloudwatch
    }
}

/// One function's share: `records` handled in `invocations`, `cold` of them cold starts, each
/// invocation billed at least `floor_ms` (provision's wait on the rate budget).
fn share(m: &Measured, records: f64, invocations: f64, cold: f64, floor_ms: f64) -> Breakdown {
    let per_invocation_ms = (m.billed_ms_per_record * records / invocations.max(1.0))
        .max(floor_ms)
        .max(1.0)
        .ceil();
    let gb_s = (invocations * per_invocation_ms + cold * m.init_billed_ms) / 1e3 * m.memory_gb;
    let log_bytes = invocations * (m.log_bytes_per_invocation + PLATFORM_LOG_BYTES);
    Breakdown {
        lambda_gb_s: gb_s * LAMBDA_ARM64_USD_PER_GB_S,
        lambda_requests: invocations * LAMBDA_USD_PER_REQUEST,
        sqs: (records * m.sqs_per_record + cold * m.init_sqs) * SQS_STANDARD_USD_PER_REQUEST,
        dynamodb: records * m.write_units_per_record * DYNAMODB_USD_PER_WRITE_UNIT
            + records * m.read_units_per_record * DYNAMODB_USD_PER_READ_UNIT
            // A cold start's own table requests, if any, as one small write each.
            + cold * m.init_dynamodb * DYNAMODB_USD_PER_WRITE_UNIT,
        secrets_manager: cold * m.init_secrets * SECRETS_MANAGER_USD_PER_CALL,
        cloudwatch: log_bytes / 1e9 * CLOUDWATCH_LOGS_USD_PER_GB
            + invocations * m.put_metric_per_invocation * CLOUDWATCH_USD_PER_PUT_METRIC_DATA,
    }
}

fn add(a: Breakdown, b: Breakdown) -> Breakdown {
    Breakdown {
        lambda_gb_s: a.lambda_gb_s + b.lambda_gb_s,
        lambda_requests: a.lambda_requests + b.lambda_requests,
        sqs: a.sqs + b.sqs,
        dynamodb: a.dynamodb + b.dynamodb,
        secrets_manager: a.secrets_manager + b.secrets_manager,
        cloudwatch: a.cloudwatch + b.cloudwatch,
    }
}

/// The event source's requests for `batches` batches, as a breakdown.
fn poller(batches: f64) -> Breakdown {
    Breakdown {
        sqs: batches * POLLER_REQUESTS_PER_BATCH * SQS_STANDARD_USD_PER_REQUEST,
        ..Breakdown::default()
    }
}

struct Inputs {
    ingest: Measured,
    provision: Measured,
    align: Measured,
    /// Align requests per purchase (provision sends one per buyer it changed).
    align_per_purchase: f64,
    /// Provision instances' billed time per batch while the rate budget paces them, ms.
    provision_rate_bound_ms: f64,
}

/// Launch day: full batches, [`COLD_STARTS_PER_FUNCTION`] cold starts each.
fn launch_day(i: &Inputs) -> Breakdown {
    let batch = BATCH as f64;
    let cold = COLD_STARTS_PER_FUNCTION;
    let aligns = PURCHASES * i.align_per_purchase;
    [
        share(&i.ingest, PURCHASES, PURCHASES, cold, 0.0),
        share(
            &i.provision,
            PURCHASES,
            PURCHASES / batch,
            cold,
            i.provision_rate_bound_ms,
        ),
        poller(PURCHASES / batch),
        share(&i.align, aligns, aligns / batch, cold, 0.0),
        poller(aligns / batch),
    ]
    .into_iter()
    .fold(Breakdown::default(), add)
}

/// A trickle: every purchase alone in its batch, every invocation a cold start.
fn trickle(i: &Inputs) -> Breakdown {
    let aligns = PURCHASES * i.align_per_purchase;
    [
        share(&i.ingest, PURCHASES, PURCHASES, PURCHASES, 0.0),
        share(&i.provision, PURCHASES, PURCHASES, PURCHASES, 0.0),
        poller(PURCHASES),
        share(&i.align, aligns, aligns, aligns, 0.0),
        poller(aligns),
    ]
    .into_iter()
    .fold(Breakdown::default(), add)
}

/// Costs that do not grow with purchases, per month: the secret, the expire schedule (every
/// run a cold start), and the custom metrics the functions' EMF lines create.
fn fixed_per_month(report: &Report) -> Option<f64> {
    let expire = Measured::from(report, "expire")?;
    let run = share(&expire, 1.0, 1.0, 1.0, 0.0);
    let metrics: usize = super::FUNCTIONS
        .iter()
        .filter_map(|f| report.get(&format!("functions.{f}.emf_metrics"))?.as_str())
        .map(|m| m.split(',').filter(|s| !s.is_empty()).count())
        .sum();
    Some(
        SECRETS_MANAGER_USD_PER_SECRET_MONTH
            + EXPIRE_RUNS_PER_MONTH * run.total()
            + metrics as f64 * CLOUDWATCH_USD_PER_METRIC_MONTH,
    )
}

fn assumptions() -> Vec<String> {
    vec![
        "AWS list prices, us-east-1, arm64, no free tier, dated 2026-11".into(),
        format!(
            "launch day: full batches of {BATCH}; {COLD_STARTS_PER_FUNCTION} cold starts of each of ingest, provision and align per 1000 purchases, each billed its measured init time and its measured Secrets Manager calls (at least the one GetSecretValue of lambda_env::load_config)"
        ),
        "trickle: every purchase alone in its batch and every invocation a cold start".into(),
        format!(
            "the SQS event source makes {POLLER_REQUESTS_PER_BATCH} requests per batch (receive, delete); idle long polls not counted"
        ),
        format!("{PLATFORM_LOG_BYTES} bytes of Lambda platform log records per invocation"),
        "DynamoDB units estimated from sizes: a write 1 unit per started KB of its request (2 per transaction item), a read 1 unit per started 4 KB of the answer".into(),
        format!(
            "provision is billed at least its instances' busy time per batch under the rate limit ({PROVISION_WORKERS} instances, from the provision part), since it waits for the budget inside the invocation"
        ),
        "align's durations are measured against the simulator without latency or limit: its wait on the API budget is not included".into(),
        "not counted: KMS requests and key, alarms, dashboard, log storage, data transfer".into(),
    ]
}

fn measured() -> Vec<String> {
    vec![
        "billed ms per invocation and per cold start, log bytes, and SQS, DynamoDB, Secrets Manager and PutMetricData requests of each function binary under moto (functions.*)".into(),
        "align requests per purchase and provision's busy time at the limit (provision.*)".into(),
        "memory sizes from template.yaml".into(),
    ]
}

const KEYS: [&str; 8] = [
    "usd_per_1000_purchases",
    "lambda_gb_s_usd",
    "lambda_requests_usd",
    "sqs_usd",
    "dynamodb_usd",
    "secrets_manager_usd",
    "cloudwatch_usd",
    "usd_per_1000_purchases_trickle",
];

/// The `cost.*` keys from the rest of the report; without the functions' figures (skipped or
/// missing) every figure is null and `cost.skipped` says why.
pub(super) fn estimate(report: &Report) -> Report {
    let mut out = Report::new();
    out.insert("cost.assumptions".into(), json!(assumptions()));
    out.insert("cost.measured".into(), json!(measured()));
    let inputs = (|| {
        let purchases = num(report, "provision.purchases")?.max(1.0);
        let batches = (purchases / BATCH as f64).ceil();
        Some(Inputs {
            ingest: Measured::from(report, "ingest")?,
            provision: Measured::from(report, "provision")?,
            align: Measured::from(report, "align")?,
            align_per_purchase: num(report, "provision.align_requests")? / purchases,
            provision_rate_bound_ms: num(report, "provision.wall_s")? * PROVISION_WORKERS as f64
                / batches
                * 1e3,
        })
    })();
    let Some(inputs) = inputs else {
        for k in KEYS {
            out.insert(format!("cost.{k}"), Value::Null);
        }
        out.insert("cost.fixed_usd_per_month".into(), Value::Null);
        out.insert(
            "cost.skipped".into(),
            json!("needs the ingest, provision and align binaries' figures (functions.*)"),
        );
        return out;
    };
    let day = launch_day(&inputs);
    let usd = |v: f64| json!(round(v, 6));
    for (k, v) in [
        ("usd_per_1000_purchases", day.total()),
        ("lambda_gb_s_usd", day.lambda_gb_s),
        ("lambda_requests_usd", day.lambda_requests),
        ("sqs_usd", day.sqs),
        ("dynamodb_usd", day.dynamodb),
        ("secrets_manager_usd", day.secrets_manager),
        ("cloudwatch_usd", day.cloudwatch),
        ("usd_per_1000_purchases_trickle", trickle(&inputs).total()),
    ] {
        out.insert(format!("cost.{k}"), usd(v));
    }
    out.insert(
        "cost.provision_billed_ms_per_batch".into(),
        json!(round(
            (inputs.provision.billed_ms_per_record * BATCH as f64)
                .max(inputs.provision_rate_bound_ms)
                .ceil(),
            0
        )),
    );
    out.insert(
        "cost.fixed_usd_per_month".into(),
        fixed_per_month(report).map_or(Value::Null, |v| json!(round(v, 2))),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_comes_from_the_function_else_the_globals() {
        let t = "Globals:\n  Function:\n    MemorySize: 256 # why\nResources:\n  IngestFunction:\n    Properties:\n      Timeout: 10\n  ExpireFunction:\n    Properties:\n      MemorySize: 512\n";
        assert_eq!(memory_in(t, "ingest"), 256);
        assert_eq!(memory_in(t, "expire"), 512);
        assert_eq!(memory_in("Resources:\n", "align"), LAMBDA_DEFAULT_MEMORY_MB);
        // The real template names one for every function.
        for f in super::super::FUNCTIONS {
            assert!(memory_mb(f) >= 128, "{f}");
        }
    }

    fn function(report: &mut Report, f: &str, records: f64, billed_ms: f64, sqs: f64, wru: f64) {
        for (k, v) in [
            ("memory_mb", 1024.0),
            ("records_per_invocation", records),
            ("billed_ms_mean", billed_ms),
            ("init_ms", 9.2),
            ("log_bytes_per_invocation", 400.0),
            ("sqs_requests_per_invocation", sqs),
            ("dynamodb_read_units_per_invocation", 0.0),
            ("dynamodb_write_units_per_invocation", wru),
            ("put_metric_data_per_invocation", 0.0),
            ("init_sqs_requests", 1.0),
            ("init_dynamodb_requests", 0.0),
            ("init_secretsmanager_requests", 1.0),
        ] {
            report.insert(format!("functions.{f}.{k}"), json!(v));
        }
    }

    #[test]
    fn a_thousand_purchases_add_up_from_the_measurements() {
        let mut r = Report::new();
        function(&mut r, "ingest", 1.0, 2.0, 1.0, 0.0);
        function(&mut r, "provision", 10.0, 50.0, 10.0, 30.0);
        function(&mut r, "align", 10.0, 30.0, 0.0, 10.0);
        for (k, v) in [
            ("provision.purchases", 100.0),
            ("provision.align_requests", 100.0),
            ("provision.wall_s", 0.1),
        ] {
            r.insert(k.into(), json!(v));
        }
        let c = estimate(&r);
        // Lambda: ingest 1000 × 2 ms, provision 100 batches × max(50, 0.1 s × 2 / 10 batches =
        // 20) ms, align 100 × 30 ms, plus 30 cold starts of 10 ms; at 1 GB.
        let gb_s = (1000.0 * 2.0 + 100.0 * 50.0 + 100.0 * 30.0 + 30.0 * 10.0) / 1e3;
        assert_eq!(
            c["cost.lambda_gb_s_usd"],
            json!(round(gb_s * LAMBDA_ARM64_USD_PER_GB_S, 6))
        );
        // SQS: 1000 sends by ingest, 1000 by provision, 2 × 200 by the event sources, 30 at
        // cold starts.
        let sqs = (1000.0 + 1000.0 + 400.0 + 30.0) * SQS_STANDARD_USD_PER_REQUEST;
        assert_eq!(c["cost.sqs_usd"], json!(round(sqs, 6)));
        let dynamo = (3000.0 + 1000.0) * DYNAMODB_USD_PER_WRITE_UNIT;
        assert_eq!(c["cost.dynamodb_usd"], json!(round(dynamo, 6)));
        assert_eq!(
            c["cost.secrets_manager_usd"],
            json!(round(30.0 * SECRETS_MANAGER_USD_PER_CALL, 6))
        );
        let total = c["cost.usd_per_1000_purchases"].as_f64().unwrap();
        let parts: f64 = KEYS[1..7]
            .iter()
            .map(|k| c[&format!("cost.{k}")].as_f64().unwrap())
            .sum();
        assert!((total - parts).abs() < 1e-5, "{total} vs {parts}");
        assert!(c["cost.usd_per_1000_purchases_trickle"].as_f64().unwrap() > total);
    }

    #[test]
    fn without_the_functions_every_figure_is_null_and_says_why() {
        let c = estimate(&Report::new());
        for k in KEYS {
            assert_eq!(c[&format!("cost.{k}")], Value::Null, "{k}");
        }
        assert!(c["cost.skipped"].is_string());
        assert!(c["cost.assumptions"].is_array());
    }
}
