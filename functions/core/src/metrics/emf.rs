//! Embedded Metric Format: what one function's invocation recorded, as the JSON lines
//! CloudWatch Logs turns into metrics in the `Enroll` namespace.

use super::{Aggregate, Function, Metric, Reason, NAMESPACE};
use std::collections::BTreeMap;

/// EMF allows at most this many values per metric on one line.
pub const EMF_MAX_VALUES: usize = 100;

impl Aggregate {
    /// [`Aggregate::emf_lines`] for one tenant's records: each line also carries `Tenant`, and
    /// every dimension set appears twice, with and without it, so the dashboard's
    /// deployment-wide figures still add every tenant up.
    pub fn tenant_emf_lines(
        &self,
        function: Function,
        tenant: &str,
        timestamp_ms: i64,
    ) -> Vec<String> {
        self.lines(function, Some(tenant), timestamp_ms)
    }

    /// Embedded Metric Format lines, one JSON object each, with `function` as the
    /// `Function` dimension of every series (one Lambda process is one function; the expiry
    /// pass's SCIM requests, recorded by the shared client as provision's, are expire's there).
    /// One line carries the `Function`-only metrics, one line per refusal reason carries
    /// `WebhooksRejected` with `Reason`, and values beyond [`EMF_MAX_VALUES`] go on further
    /// lines. Nothing recorded: no line.
    pub fn emf_lines(&self, function: Function, timestamp_ms: i64) -> Vec<String> {
        self.lines(function, None, timestamp_ms)
    }

    fn lines(&self, function: Function, tenant: Option<&str>, timestamp_ms: i64) -> Vec<String> {
        let mut counts: BTreeMap<Metric, u64> = BTreeMap::new();
        let mut reasons: BTreeMap<Reason, u64> = BTreeMap::new();
        for (s, n) in &self.counts {
            match s.reason {
                Some(r) => *reasons.entry(r).or_default() += n,
                None => *counts.entry(s.metric).or_default() += n,
            }
        }
        let mut values: BTreeMap<Metric, Vec<u64>> = BTreeMap::new();
        for ((_, m), v) in &self.values {
            values.entry(*m).or_default().extend(v.iter().copied());
        }
        let line = |dimensions: &[&str],
                    extra: &[(&str, &str)],
                    metrics: Vec<(Metric, serde_json::Value)>| {
            let mut root = serde_json::Map::new();
            let mut sets = vec![dimensions.to_vec()];
            if let Some(t) = tenant {
                let mut with = dimensions.to_vec();
                with.push("Tenant");
                sets.push(with);
                root.insert("Tenant".into(), t.into());
            }
            root.insert(
                "_aws".into(),
                serde_json::json!({
                    "Timestamp": timestamp_ms,
                    "CloudWatchMetrics": [{
                        "Namespace": NAMESPACE,
                        "Dimensions": sets,
                        "Metrics": metrics
                            .iter()
                            .map(|(m, _)| serde_json::json!({"Name": m.name(), "Unit": m.unit().as_str()}))
                            .collect::<Vec<_>>(),
                    }],
                }),
            );
            root.insert("Function".into(), function.as_str().into());
            for (k, v) in extra {
                root.insert((*k).into(), (*v).into());
            }
            for (m, v) in metrics {
                root.insert(m.name().into(), v);
            }
            serde_json::Value::Object(root).to_string()
        };
        let mut lines = Vec::new();
        let mut main: Vec<(Metric, serde_json::Value)> = counts
            .iter()
            .map(|(m, n)| (*m, serde_json::Value::from(*n)))
            .collect();
        let mut rest: Vec<(Metric, &[u64])> = Vec::new();
        for (m, v) in &values {
            let mut chunks = v.chunks(EMF_MAX_VALUES);
            if let Some(first) = chunks.next() {
                main.push((*m, serde_json::Value::from(first.to_vec())));
            }
            rest.extend(chunks.map(|c| (*m, c)));
        }
        if !main.is_empty() {
            lines.push(line(&["Function"], &[], main));
        }
        for (r, n) in reasons {
            lines.push(line(
                &["Function", "Reason"],
                &[("Reason", r.as_str())],
                vec![(Metric::WebhooksRejected, n.into())],
            ));
        }
        for (m, chunk) in rest {
            lines.push(line(&["Function"], &[], vec![(m, chunk.to_vec().into())]));
        }
        lines
    }
}
