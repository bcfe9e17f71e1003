//! The CloudWatch dashboard and alarms of `template.yaml` show what the issue asked for and name
//! only metrics that exist: enroll's own are the list in `enroll_core::metrics` (namespace
//! `Enroll`, dimension `Function` = a stage), AWS's come from a short list of real ones. A
//! misspelt metric is not an error to CloudFormation or CloudWatch: the graph stays empty and
//! the alarm never fires, which is why this is checked here.
//!
//! The template is read with a YAML parser that drops CloudFormation's tags and keeps their
//! values: `!Ref AlarmTopic` reads as `AlarmTopic`, `!Sub "..."` as the text to substitute.

use enroll_core::metrics::{Metric, Unit, NAMESPACE};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use yaml_rust2::{Yaml, YamlLoader};

/// The values of the `Function` dimension: the short stage names, on AWS as locally.
const STAGES: [&str; 5] = ["ingest", "provision", "align", "expire", "notify"];
/// The values of the `Reason` dimension of `WebhooksRejected`.
const REASONS: [&str; 4] = ["signature", "stale", "malformed", "too_large"];
/// AWS metrics the dashboard and alarms may name, with the dimension each is read by.
const AWS_METRICS: [(&str, &str, &str); 7] = [
    ("AWS/Lambda", "Duration", "FunctionName"),
    ("AWS/Lambda", "Errors", "FunctionName"),
    ("AWS/Lambda", "Throttles", "FunctionName"),
    ("AWS/Lambda", "Invocations", "FunctionName"),
    ("AWS/Lambda", "Url5xxCount", "FunctionName"),
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName"),
    ("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName"),
];
/// Where the SCIM token alarm sends the operator: a heading of the README.
const RUNBOOK: &str = "README.md#the-scim-token-was-rejected";

/// One metric as the dashboard or an alarm names it.
#[derive(Debug, Clone)]
struct Named {
    namespace: String,
    name: String,
    /// Dimension name to value, with `!Sub` variables replaced by [`Template::substitute`].
    dimensions: BTreeMap<String, String>,
    /// Sum, Maximum, p99, ...
    stat: String,
    period: Option<u64>,
    /// Where it was named, for the failure message.
    place: String,
}

struct Template {
    root: Yaml,
    /// Sample value given to a `${...}` variable, to the variable.
    samples: BTreeMap<String, String>,
}

const STACK: &str = "enroll-sample";
const REGION: &str = "eu-west-1";

impl Template {
    fn load() -> Self {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml"))
                .expect("template.yaml");
        let mut docs = YamlLoader::load_from_str(&text).expect("template.yaml is YAML");
        Self {
            root: docs.remove(0),
            samples: BTreeMap::new(),
        }
    }

    fn resources(&self) -> impl Iterator<Item = (&str, &Yaml)> {
        self.root["Resources"]
            .as_hash()
            .expect("Resources")
            .iter()
            .map(|(k, v)| (k.as_str().expect("logical id"), v))
    }

    fn of_type<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = (&'a str, &'a Yaml)> {
        self.resources()
            .filter(move |(_, r)| r["Type"].as_str() == Some(ty))
    }

    fn resource(&self, id: &str) -> &Yaml {
        let r = &self.root["Resources"][id];
        assert!(!r.is_badvalue(), "template.yaml declares no {id}");
        r
    }

    /// What CloudFormation would make of a `!Sub` text, with sample values: the stack name and
    /// region, each parameter's default, and a recognisable value per resource reference (see
    /// [`Template::resolve`]). A variable naming nothing in the template fails the test.
    fn substitute(&mut self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            if let Some(literal) = after.strip_prefix('!') {
                // ${!Name} is CloudFormation's escape for a literal ${Name}.
                out.push_str("${");
                rest = literal;
                continue;
            }
            let end = after.find('}').expect("an unclosed ${ in a !Sub");
            let var = &after[..end];
            let value = self.sample(var);
            self.samples.insert(value.clone(), var.to_owned());
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn sample(&self, var: &str) -> String {
        match var {
            "AWS::Region" => return REGION.to_owned(),
            "AWS::StackName" => return STACK.to_owned(),
            "AWS::AccountId" => return "123456789012".to_owned(),
            "AWS::Partition" => return "aws".to_owned(),
            _ => {}
        }
        let parameter = &self.root["Parameters"][var];
        if !parameter.is_badvalue() {
            return match &parameter["Default"] {
                Yaml::Integer(n) => n.to_string(),
                Yaml::String(s) => s.clone(),
                other => panic!("parameter {var} used in a !Sub has no usable default: {other:?}"),
            };
        }
        let (id, attribute) = var.split_once('.').unwrap_or((var, ""));
        self.resource(id);
        if attribute.is_empty() {
            format!("{STACK}-ref-{id}")
        } else {
            format!("{STACK}-{attribute}-of-{id}")
        }
    }

    /// The variable a substituted value came from (`IngestFunction`, `AlignQueue.QueueName`),
    /// or `None` for a value written out in the template.
    fn resolve(&self, value: &str) -> Option<&str> {
        self.samples.get(value).map(String::as_str)
    }

    fn dashboard(&mut self) -> Value {
        let (_, dashboard) = self
            .of_type("AWS::CloudWatch::Dashboard")
            .next()
            .expect("template.yaml declares a dashboard");
        let body = dashboard["Properties"]["DashboardBody"]
            .as_str()
            .expect("DashboardBody is a !Sub text")
            .to_owned();
        let body = self.substitute(&body);
        serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!("the dashboard body is not JSON once substituted: {e}\n{body}")
        })
    }

    fn alarms(&self) -> Vec<(String, Yaml)> {
        self.of_type("AWS::CloudWatch::Alarm")
            .map(|(id, r)| (id.to_owned(), r["Properties"].clone()))
            .collect()
    }
}

/// Every metric line of every metric widget. A line is `[namespace, name, (dimension,
/// value)*, {options}?]`; the `"..."` shorthand is refused so that each line says in full what
/// it shows.
fn dashboard_metrics(dashboard: &Value) -> Vec<Named> {
    let mut named = Vec::new();
    let widgets = dashboard["widgets"].as_array().expect("widgets");
    assert!(!widgets.is_empty(), "the dashboard has no widget");
    for w in widgets {
        if w["type"] != "metric" {
            continue;
        }
        let p = &w["properties"];
        let title = p["title"]
            .as_str()
            .expect("every metric widget has a title");
        assert_eq!(
            p["region"], REGION,
            "widget `{title}` shows the stack's own region (${{AWS::Region}})"
        );
        let lines = p["metrics"].as_array().expect("metrics");
        assert!(!lines.is_empty(), "widget `{title}` shows nothing");
        for line in lines {
            let line = line.as_array().expect("a metric line is an array");
            let (options, fields) = match line.last() {
                Some(Value::Object(o)) => (Some(o), &line[..line.len() - 1]),
                _ => (None, &line[..]),
            };
            let fields: Vec<&str> = fields
                .iter()
                .map(|f| f.as_str().expect("metric line fields are strings"))
                .collect();
            assert!(
                fields.len() >= 2
                    && fields[2..].chunks_exact(2).remainder().is_empty()
                    && !fields.contains(&"..."),
                "widget `{title}`: write the line in full, [namespace, name, dimension, value, ...]: {fields:?}"
            );
            let option = |k: &str| options.and_then(|o| o.get(k)).unwrap_or(&p[k]);
            named.push(Named {
                namespace: fields[0].to_owned(),
                name: fields[1].to_owned(),
                dimensions: fields[2..]
                    .chunks(2)
                    .map(|d| (d[0].to_owned(), d[1].to_owned()))
                    .collect(),
                stat: option("stat")
                    .as_str()
                    .unwrap_or_else(|| panic!("widget `{title}`: a line without a stat"))
                    .to_owned(),
                period: option("period").as_u64(),
                place: format!("dashboard widget `{title}`"),
            });
        }
    }
    named
}

fn yaml_dimensions(d: &Yaml) -> BTreeMap<String, String> {
    d.as_vec()
        .map(|v| {
            v.iter()
                .map(|d| {
                    (
                        d["Name"].as_str().expect("dimension name").to_owned(),
                        d["Value"].as_str().expect("dimension value").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The metrics an alarm watches: its one metric, or each `MetricStat` of its metric math.
fn alarm_metrics(id: &str, p: &Yaml) -> Vec<Named> {
    let place = format!("alarm {id}");
    if let Some(metrics) = p["Metrics"].as_vec() {
        let expression = metrics
            .iter()
            .find_map(|m| m["Expression"].as_str())
            .unwrap_or_default();
        return metrics
            .iter()
            .filter(|m| !m["MetricStat"].is_badvalue())
            .map(|m| {
                let stat = &m["MetricStat"];
                let mid = m["Id"].as_str().expect("metric id");
                assert!(
                    m["ReturnData"].as_bool() == Some(true) || expression.contains(mid),
                    "{place}: metric {mid} is neither returned nor used in the expression"
                );
                Named {
                    namespace: stat["Metric"]["Namespace"].as_str().unwrap().to_owned(),
                    name: stat["Metric"]["MetricName"].as_str().unwrap().to_owned(),
                    dimensions: yaml_dimensions(&stat["Metric"]["Dimensions"]),
                    stat: stat["Stat"].as_str().unwrap().to_owned(),
                    period: stat["Period"].as_i64().map(|n| n as u64),
                    place: place.clone(),
                }
            })
            .collect();
    }
    let stat = p["Statistic"]
        .as_str()
        .or_else(|| p["ExtendedStatistic"].as_str())
        .unwrap_or_else(|| panic!("{place} has no statistic"));
    vec![Named {
        namespace: p["Namespace"].as_str().expect("Namespace").to_owned(),
        name: p["MetricName"].as_str().expect("MetricName").to_owned(),
        dimensions: yaml_dimensions(&p["Dimensions"]),
        stat: stat.to_owned(),
        period: p["Period"].as_i64().map(|n| n as u64),
        place,
    }]
}

/// The resource a dimension value names, whether substituted from a !Sub (`${IngestFunction}`)
/// or written as an alarm's `!Ref IngestFunction` / `!GetAtt AlignQueue.QueueName`.
fn named_resource<'a>(t: &'a Template, value: &'a str) -> (&'a str, &'a str) {
    let var = t.resolve(value).unwrap_or(value);
    let (id, attribute) = var.split_once('.').unwrap_or((var, ""));
    (id, attribute)
}

/// The metric exists, with the dimensions it is emitted with, read with a statistic that
/// makes sense for its unit.
fn check_exists(t: &Template, m: &Named) {
    let place = &m.place;
    if m.namespace == NAMESPACE {
        let metric = Metric::ALL
            .into_iter()
            .find(|x| x.name() == m.name)
            .unwrap_or_else(|| {
                panic!(
                    "{place} names {}/{}, which enroll does not emit (enroll_core::metrics::Metric)",
                    m.namespace, m.name
                )
            });
        let function = m
            .dimensions
            .get("Function")
            .unwrap_or_else(|| panic!("{place}: {} without the Function dimension", m.name));
        assert!(
            STAGES.contains(&function.as_str()),
            "{place}: Function={function} is not a stage name ({STAGES:?})"
        );
        let expected: BTreeSet<&str> = if metric == Metric::WebhooksRejected {
            ["Function", "Reason"].into()
        } else {
            ["Function"].into()
        };
        let got: BTreeSet<&str> = m.dimensions.keys().map(String::as_str).collect();
        assert_eq!(got, expected, "{place}: the dimensions of {}", m.name);
        if let Some(reason) = m.dimensions.get("Reason") {
            assert!(
                REASONS.contains(&reason.as_str()),
                "{place}: Reason={reason}"
            );
        }
        match metric.unit() {
            Unit::Count => assert_eq!(m.stat, "Sum", "{place}: {} is a count", m.name),
            Unit::Milliseconds => assert!(
                m.stat.starts_with('p')
                    || ["Average", "Maximum", "Minimum"].contains(&m.stat.as_str()),
                "{place}: {} is a duration, not something to {}",
                m.name,
                m.stat
            ),
        }
        return;
    }
    let (_, _, dimension) = AWS_METRICS
        .iter()
        .find(|(ns, name, _)| *ns == m.namespace && *name == m.name)
        .unwrap_or_else(|| {
            panic!(
                "{place} names {}/{}, not a known AWS metric",
                m.namespace, m.name
            )
        });
    let value = m
        .dimensions
        .get(*dimension)
        .unwrap_or_else(|| panic!("{place}: {} without {dimension}", m.name));
    assert_eq!(m.dimensions.len(), 1, "{place}: {:?}", m.dimensions);
    let (id, attribute) = named_resource(t, value);
    let ty = t.resource(id)["Type"].as_str().unwrap_or_default();
    match *dimension {
        "FunctionName" => assert!(
            ty == "AWS::Serverless::Function" && attribute.is_empty(),
            "{place}: FunctionName {value} is not one of this stack's functions"
        ),
        _ => assert!(
            ty == "AWS::SQS::Queue" && attribute == "QueueName",
            "{place}: QueueName {value} is not one of this stack's queues"
        ),
    }
}

#[test]
fn the_dashboard_is_json_and_names_only_metrics_that_exist() {
    let mut t = Template::load();
    let dashboard = t.dashboard();
    let metrics = dashboard_metrics(&dashboard);
    for m in &metrics {
        check_exists(&t, m);
    }
}

#[test]
fn every_alarm_names_a_metric_that_exists_and_mails_the_alarm_topic() {
    let t = Template::load();
    let (topic, _) = t.of_type("AWS::SNS::Topic").next().expect("an alarm topic");
    let alarms = t.alarms();
    assert!(!alarms.is_empty());
    for (id, p) in &alarms {
        let metrics = alarm_metrics(id, p);
        for m in &metrics {
            check_exists(&t, m);
        }
        for actions in ["AlarmActions", "OKActions"] {
            // !If [HasAlarmEmail, [!Ref AlarmTopic], !Ref AWS::NoValue]: the topic exists only
            // when there is an address to mail.
            let names_topic = p[actions].as_vec().is_some_and(|v| {
                v.get(1).and_then(Yaml::as_vec) == Some(&vec![Yaml::String(topic.to_owned())])
            });
            assert!(names_topic, "alarm {id}: {actions} go to {topic}");
        }
        if metrics.iter().any(|m| m.namespace == NAMESPACE) {
            // enroll's metrics exist only once something was counted: silence is good news.
            assert_eq!(
                p["TreatMissingData"].as_str(),
                Some("notBreaching"),
                "alarm {id}: missing data must not alarm"
            );
        }
    }
}

/// The one alarm that watches `metric`, and what it watches.
fn alarm_on(t: &Template, metric: Metric) -> (String, Yaml, Vec<Named>) {
    let mut found: Vec<_> = t
        .alarms()
        .into_iter()
        .map(|(id, p)| {
            let m = alarm_metrics(&id, &p);
            (id, p, m)
        })
        .filter(|(_, _, m)| {
            m.iter()
                .any(|m| m.namespace == NAMESPACE && m.name == metric.name())
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one alarm on {}: {:?}",
        metric.name(),
        found.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    found.remove(0)
}

fn stages_of(metrics: &[Named]) -> BTreeSet<&str> {
    metrics
        .iter()
        .map(|m| m.dimensions["Function"].as_str())
        .collect()
}

#[test]
fn a_rejected_scim_token_alarms_at_once_and_says_how_to_rotate_it() {
    let t = Template::load();
    let (id, p, metrics) = alarm_on(&t, Metric::ScimAuthFailures);
    // Both stages that spend the SCIM token.
    assert_eq!(stages_of(&metrics), ["expire", "provision"].into(), "{id}");
    assert!(
        metrics.iter().all(|m| m.period == Some(300)),
        "{id}: 5 minutes"
    );
    assert_eq!(p["Threshold"].as_i64(), Some(1), "{id}");
    assert_eq!(
        p["ComparisonOperator"].as_str(),
        Some("GreaterThanOrEqualToThreshold"),
        "{id}"
    );
    assert_eq!(
        p["EvaluationPeriods"].as_i64(),
        Some(1),
        "{id}: the first one"
    );
    let description = p["AlarmDescription"].as_str().expect("a description");
    for needed in [
        "SCIM token was rejected",
        "owner who made it leaves",
        "Settings > Identity & provisioning > SCIM",
        "secret",
        RUNBOOK,
    ] {
        assert!(
            description.contains(needed),
            "{id}'s description says `{needed}`: {description}"
        );
    }
    assert!(description.len() <= 1024, "CloudWatch's limit");

    // The link leads somewhere: a heading of the README with that GitHub anchor.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let anchor = RUNBOOK.split_once('#').unwrap().1;
    assert!(
        readme
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .any(|h| github_anchor(h.trim_start_matches('#')) == anchor),
        "README.md has no heading whose anchor is #{anchor}"
    );
}

/// The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to `-`.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn sustained_scim_throttling_and_slow_access_alarm() {
    let t = Template::load();

    let (id, p, metrics) = alarm_on(&t, Metric::ScimThrottled);
    assert_eq!(stages_of(&metrics), ["expire", "provision"].into(), "{id}");
    // Sustained: every period of the window, not one burst of retried 429s.
    assert!(p["EvaluationPeriods"].as_i64().unwrap() >= 3, "{id}");
    assert_eq!(p["DatapointsToAlarm"], p["EvaluationPeriods"], "{id}");

    let (id, p, metrics) = alarm_on(&t, Metric::TimeToAccessMs);
    assert_eq!(metrics[0].stat, "p99", "{id}");
    assert_eq!(stages_of(&metrics), ["provision"].into(), "{id}");
    // The threshold is the stack parameter, by default two minutes.
    assert_eq!(
        p["Threshold"].as_str(),
        Some("TimeToAccessP99AlarmMs"),
        "{id}"
    );
    assert_eq!(
        t.root["Parameters"]["TimeToAccessP99AlarmMs"]["Default"].as_i64(),
        Some(120_000)
    );
}

#[test]
fn the_dashboard_shows_access_latency_failures_and_every_function() {
    let mut t = Template::load();
    let dashboard = t.dashboard();
    let metrics = dashboard_metrics(&dashboard);
    let shows = |namespace: &str, name: &str, stat: &str| -> Vec<&Named> {
        metrics
            .iter()
            .filter(|m| m.namespace == namespace && m.name == name && m.stat == stat)
            .collect()
    };

    // Purchases turned into access, per hour.
    assert!(
        shows(NAMESPACE, Metric::EventsApplied.name(), "Sum")
            .iter()
            .any(|m| m.period == Some(3600) && m.dimensions["Function"] == "provision"),
        "EventsApplied per hour"
    );
    for p in ["p50", "p99"] {
        assert!(
            !shows(NAMESPACE, Metric::TimeToAccessMs.name(), p).is_empty(),
            "time to access {p}"
        );
    }
    for m in [
        Metric::EventsParked,
        Metric::ScimThrottled,
        Metric::ScimAuthFailures,
    ] {
        assert!(
            !shows(NAMESPACE, m.name(), "Sum").is_empty(),
            "{}",
            m.name()
        );
    }

    // The depth of every dead-letter queue: the queues some RedrivePolicy sends to.
    let dead_letter: BTreeSet<String> = t
        .of_type("AWS::SQS::Queue")
        .filter_map(|(_, q)| q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"].as_str())
        .map(|arn| arn.trim_end_matches(".Arn").to_owned())
        .collect();
    assert_eq!(dead_letter.len(), 3, "{dead_letter:?}");
    let shown: BTreeSet<String> = metrics
        .iter()
        .filter(|m| m.name == "ApproximateNumberOfMessagesVisible")
        .map(|m| named_resource(&t, &m.dimensions["QueueName"]).0.to_owned())
        .collect();
    assert_eq!(shown, dead_letter, "dead-letter queue depth");

    // Duration and errors of every function.
    let functions: BTreeSet<String> = t
        .of_type("AWS::Serverless::Function")
        .map(|(id, _)| id.to_owned())
        .collect();
    for name in ["Duration", "Errors"] {
        let shown: BTreeSet<String> = metrics
            .iter()
            .filter(|m| m.namespace == "AWS/Lambda" && m.name == name)
            .map(|m| {
                named_resource(&t, &m.dimensions["FunctionName"])
                    .0
                    .to_owned()
            })
            .collect();
        assert_eq!(shown, functions, "Lambda {name} of every function");
    }
}

#[test]
fn a_misspelt_metric_or_a_broken_body_is_caught() {
    // The checks above would pass on anything if they could not fail: feed them mistakes.
    let mut t = Template::load();
    let good = Named {
        namespace: NAMESPACE.to_owned(),
        name: "ScimAuthFailures".to_owned(),
        dimensions: [("Function".to_owned(), "provision".to_owned())].into(),
        stat: "Sum".to_owned(),
        period: Some(300),
        place: "seeded".to_owned(),
    };
    check_exists(&t, &good);
    let bad = |f: &dyn Fn(&mut Named)| {
        let mut m = good.clone();
        f(&mut m);
        std::panic::catch_unwind(|| check_exists(&Template::load(), &m)).is_err()
    };
    assert!(bad(&|m| m.name = "ScimAuthFailure".into()), "misspelt name");
    assert!(bad(&|m| m.stat = "Average".into()), "a count averaged");
    assert!(
        bad(&|m| {
            m.dimensions
                .insert("Function".into(), "enroll-sample-provision".into());
        }),
        "a function name where the stage goes"
    );
    assert!(
        bad(&|m| {
            m.namespace = "AWS/Lambda".into();
            m.name = "Duration".into();
            m.dimensions = [("FunctionName".into(), "IngestLogGroup".into())].into();
            m.stat = "p99".into();
        }),
        "a log group where a function goes"
    );
    assert!(
        bad(&|m| {
            m.namespace = "AWS/SQS".into();
            m.name = "NumberOfMessagesVisible".into();
        }),
        "not an AWS metric"
    );

    // A body CloudFormation would substitute into something that is not JSON.
    let body = t.substitute(r#"{"value": ${TimeToAccessP99AlarmMs}, "region": ${AWS::Region}}"#);
    assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
    let unknown = std::panic::catch_unwind(move || {
        Template::load().substitute("${NoSuchResource.Arn}");
    });
    assert!(unknown.is_err(), "a !Sub variable that names nothing");
    assert_eq!(
        github_anchor(" The SCIM token was rejected"),
        "the-scim-token-was-rejected"
    );
}
