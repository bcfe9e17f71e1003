//! How `enroll dlq list`, `replay` and `delete` show what is parked and what moved. The work is
//! the dead-letter admin port's (`enroll_core::dead_letters`), the same on SQS and the
//! embedded queues.

use crate::print_table;
use enroll_core::dead_letters::{ParkedMessage, ReplayReport};

pub fn print_list(msgs: &[ParkedMessage]) {
    if msgs.is_empty() {
        println!("no parked messages");
        return;
    }
    // A tenant column only on a deployment whose parked messages name tenants.
    let tenants = msgs.iter().any(|m| m.tenant.is_some());
    let rows: Vec<Vec<String>> = msgs
        .iter()
        .map(|m| {
            let mut row = vec![
                m.queue.as_str().to_owned(),
                human_age(m.age_secs),
                m.receive_count.to_string(),
                m.event_key.clone().unwrap_or_else(|| "-".into()),
                m.buyer.clone().unwrap_or_else(|| "-".into()),
                m.reason
                    .as_deref()
                    .map(|r| r.chars().take(80).collect())
                    .unwrap_or_else(|| "-".into()),
            ];
            if tenants {
                row.insert(1, m.tenant.clone().unwrap_or_else(|| "-".into()));
            }
            row
        })
        .collect();
    let mut headers = vec!["QUEUE", "AGE", "RECEIVES", "EVENT KEY", "BUYER", "REASON"];
    if tenants {
        headers.insert(1, "TENANT");
    }
    print_table(&headers, &rows);
    println!("\n{} parked message(s)", msgs.len());
}

pub fn print_replay(reports: &[ReplayReport]) {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.queue.as_str().to_owned(),
                r.method.clone(),
                if r.dry_run {
                    format!("{} (dry run)", r.moved_count)
                } else {
                    r.moved_count.to_string()
                },
                r.kept.to_string(),
                r.failed.len().to_string(),
            ]
        })
        .collect();
    print_table(&["QUEUE", "METHOD", "MOVED", "KEPT", "FAILED"], &rows);
    for r in reports {
        for m in &r.moved {
            println!(
                "  {} {} {}",
                verb(r),
                m.event_key.as_deref().unwrap_or("-"),
                m.reason
                    .as_deref()
                    .map(|s| s.chars().take(60).collect::<String>())
                    .unwrap_or_default()
            );
        }
        for f in &r.failed {
            println!("  failed {f}");
        }
    }
}

fn human_age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn verb(r: &ReplayReport) -> &'static str {
    match (r.method.as_str(), r.dry_run) {
        ("delete", true) => "would delete",
        ("delete", false) => "deleted",
        (_, true) => "would move",
        (_, false) => "moved",
    }
}
