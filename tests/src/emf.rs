//! A checker for CloudWatch Embedded Metric Format, written from the specification
//! (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>),
//! independent of the code that writes the lines. CloudWatch drops a line that breaks these
//! rules without a word, so a test holds every line the functions print to them.

use serde_json::{Map, Value};

/// The units the specification allows.
pub const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// At most this many metrics in one directive, dimensions in one set, and values per metric.
pub const MAX_METRICS: usize = 100;
pub const MAX_DIMENSIONS: usize = 30;
pub const MAX_VALUES: usize = 100;

/// One metric a valid line defines: its namespace, name, unit, dimensions (name and value) and
/// values.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub namespace: String,
    pub name: String,
    pub unit: Option<String>,
    pub dimensions: Vec<(String, String)>,
    pub values: Vec<f64>,
}

/// Checks one line; answers what it defines, or what is wrong with it.
pub fn validate(line: &str) -> Result<Vec<Datum>, String> {
    let root: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let root = root.as_object().ok_or("the root is not an object")?;
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or("no _aws object")?;
    let ts = aws.get("Timestamp").ok_or("no _aws.Timestamp")?;
    if !(ts.is_u64() || ts.is_i64()) {
        return Err(format!("_aws.Timestamp is not an integer: {ts}"));
    }
    // Milliseconds since the epoch: after 2001 in milliseconds rules out seconds.
    if ts.as_i64().unwrap_or(0) < 1_000_000_000_000 {
        return Err(format!("_aws.Timestamp is not in milliseconds: {ts}"));
    }
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or("_aws.CloudWatchMetrics is not an array")?;
    let mut out = Vec::new();
    for d in directives {
        out.extend(directive(root, d)?);
    }
    Ok(out)
}

fn directive(root: &Map<String, Value>, d: &Value) -> Result<Vec<Datum>, String> {
    let d = d.as_object().ok_or("a directive is not an object")?;
    let namespace = d
        .get("Namespace")
        .and_then(Value::as_str)
        .ok_or("a directive has no Namespace string")?;
    if namespace.trim().is_empty() || namespace.len() > 255 {
        return Err(format!("bad Namespace {namespace:?}"));
    }
    let sets = d
        .get("Dimensions")
        .and_then(Value::as_array)
        .ok_or("Dimensions is not an array")?;
    let mut dimension_sets = Vec::new();
    for set in sets {
        let set = set
            .as_array()
            .ok_or("Dimensions holds something other than arrays")?;
        if set.len() > MAX_DIMENSIONS {
            return Err(format!("a dimension set has {} dimensions", set.len()));
        }
        let mut dims = Vec::new();
        for name in set {
            let name = name.as_str().ok_or("a dimension name is not a string")?;
            let value = root
                .get(name)
                .ok_or(format!("dimension {name} names no top-level member"))?;
            let value = value
                .as_str()
                .ok_or(format!("dimension {name}'s member is not a string"))?;
            if value.is_empty() || value.len() > 1024 {
                return Err(format!("dimension {name} has a bad value {value:?}"));
            }
            dims.push((name.to_owned(), value.to_owned()));
        }
        dimension_sets.push(dims);
    }
    let metrics = d
        .get("Metrics")
        .and_then(Value::as_array)
        .ok_or("Metrics is not an array")?;
    if metrics.len() > MAX_METRICS {
        return Err(format!("{} metrics in one directive", metrics.len()));
    }
    let mut out = Vec::new();
    for m in metrics {
        let m = m
            .as_object()
            .ok_or("a metric definition is not an object")?;
        let name = m
            .get("Name")
            .and_then(Value::as_str)
            .ok_or("a metric has no Name string")?;
        let unit = match m.get("Unit") {
            None => None,
            Some(u) => {
                let u = u.as_str().ok_or("Unit is not a string")?;
                if !UNITS.contains(&u) {
                    return Err(format!("{name} has an invalid Unit {u:?}"));
                }
                Some(u.to_owned())
            }
        };
        if let Some(r) = m.get("StorageResolution") {
            if r.as_u64() != Some(1) && r.as_u64() != Some(60) {
                return Err(format!("{name} has StorageResolution {r}"));
            }
        }
        let member = root
            .get(name)
            .ok_or(format!("metric {name} names no top-level member"))?;
        let values = match member {
            Value::Number(n) => vec![n.as_f64().ok_or("a value out of range")?],
            Value::Array(a) => {
                if a.is_empty() || a.len() > MAX_VALUES {
                    return Err(format!("{name} holds {} values", a.len()));
                }
                a.iter()
                    .map(|v| v.as_f64().ok_or(format!("{name} holds a non-number: {v}")))
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("{name}'s member is not a number: {other}")),
        };
        for dims in &dimension_sets {
            out.push(Datum {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                unit: unit.clone(),
                dimensions: dims.clone(),
                values: values.clone(),
            });
        }
    }
    Ok(out)
}

/// The lines of `text` that claim to be EMF (JSON objects with an `_aws` member), each checked;
/// a line that claims to be EMF and breaks the rules is an error.
pub fn blocks(text: &str) -> Result<Vec<Datum>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        if !line.contains("\"_aws\"") {
            continue;
        }
        // A runner may prefix a function's output; the JSON starts at the first brace.
        let start = line.find('{').unwrap_or(0);
        out.extend(validate(&line[start..]).map_err(|e| format!("{e}: {line}"))?);
    }
    Ok(out)
}

/// Every string anywhere in a JSON value: where personal data would show.
pub fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Object(o) => o
            .iter()
            .flat_map(|(k, v)| std::iter::once(k.clone()).chain(strings(v)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a string looks like an email address: something@something.something.
pub fn looks_like_email(s: &str) -> bool {
    s.split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"Enroll","Dimensions":[["Function"]],"Metrics":[{"Name":"A","Unit":"Count"},{"Name":"T","Unit":"Milliseconds"}]}]},"Function":"ingest","A":3,"T":[1,2]}"#;

    #[test]
    fn accepts_a_valid_line_and_refuses_each_broken_rule() {
        let data = validate(GOOD).unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(data[1].values, vec![1.0, 2.0]);
        let broken = [
            GOOD.replace("1700000000000", "1700000000.5"),
            GOOD.replace("1700000000000", "1700000000"),
            GOOD.replace(r#""Namespace":"Enroll","#, ""),
            GOOD.replace(r#"[["Function"]]"#, r#"["Function"]"#),
            GOOD.replace(r#"[["Function"]]"#, r#"[["Stage"]]"#),
            GOOD.replace(r#""Function":"ingest""#, r#""Function":3"#),
            GOOD.replace(r#""A":3"#, r#""A":"3""#),
            GOOD.replace(r#""A":3,"#, ""),
            GOOD.replace(r#""Unit":"Count""#, r#""Unit":"Counts""#),
            GOOD.replace(r#""T":[1,2]"#, r#""T":[]"#),
        ];
        for line in broken {
            assert!(validate(&line).is_err(), "accepted: {line}");
        }
        let many: Vec<String> = (0..=MAX_METRICS)
            .map(|i| format!(r#"{{"Name":"A{i}"}}"#))
            .collect();
        let line = GOOD.replace(
            r#"[{"Name":"A","Unit":"Count"},{"Name":"T","Unit":"Milliseconds"}]"#,
            &format!("[{}]", many.join(",")),
        );
        assert!(validate(&line)
            .unwrap_err()
            .contains("metrics in one directive"));
    }

    #[test]
    fn emails_are_recognised() {
        assert!(looks_like_email("ada@example.com"));
        assert!(!looks_like_email("provision"));
    }
}
