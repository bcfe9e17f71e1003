//! `template.yaml` runs the shipped stage timings (`enroll_core::timings`): each function's
//! timeout is its stage's claim, each queue's visibility timeout and `maxReceiveCount` are the
//! stage's. `enroll dev` and `enroll chaos` take the same constants from the code, so a change
//! to one side that the other does not follow fails here.

use enroll_core::timings::{StageTimings, ALIGN, PROVISION};

/// The first `key: value` number after the line that opens `resource` (two-space indent).
fn number_in(template: &str, resource: &str, key: &str) -> u64 {
    let start = template
        .find(&format!("\n  {resource}:\n"))
        .unwrap_or_else(|| panic!("template.yaml declares no {resource}"));
    let rest = &template[start + resource.len() + 4..];
    // The resource ends where the next one at the same indent starts.
    let end = rest
        .match_indices("\n  ")
        .find(|(i, _)| {
            rest[i + 3..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
        })
        .map_or(rest.len(), |(i, _)| i);
    let body = &rest[..end];
    let line = body
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{resource} has no {key}"));
    let value = line.split(':').nth(1).unwrap().split('#').next().unwrap();
    value
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{resource}.{key} is not a number: {line}"))
}

fn check(template: &str, function: &str, queue: &str, t: &StageTimings) {
    assert_eq!(
        number_in(template, function, "Timeout"),
        t.claim.as_secs(),
        "{function}'s timeout is its claim"
    );
    assert_eq!(
        number_in(template, queue, "VisibilityTimeout"),
        t.visibility.as_secs(),
        "{queue}'s visibility timeout"
    );
    assert_eq!(
        number_in(template, queue, "maxReceiveCount"),
        u64::from(t.max_receives),
        "{queue}'s maxReceiveCount"
    );
}

#[test]
fn the_template_runs_the_shipped_timings() {
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml"))
            .expect("template.yaml");
    PROVISION.check().unwrap();
    ALIGN.check().unwrap();
    check(&template, "ProvisionFunction", "ProvisionQueue", &PROVISION);
    check(&template, "AlignFunction", "AlignQueue", &ALIGN);
}
