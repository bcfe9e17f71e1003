//! Activity: per day, the purchases received, the time from a purchase's receipt to its access
//! (the median of that day's purchases), and the events parked in a dead-letter queue. Read
//! from buyers' histories, which record when ingest accepted an event and when provision
//! applied it, and from the dead-letter listing.

use super::render;
use crate::html::{bars, notice};
use crate::App;
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use enroll_core::history::{HistoryEntry, Stage};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Histories read for the charts, at most: enough for a local shop's recent days.
const MAX_BUYERS: usize = 500;

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// A purchase received at a moment, and its seconds to access.
type Access = (DateTime<Utc>, f64);

/// Purchases received per day, and each purchase's seconds to access by the day received.
pub fn purchases(history: &[HistoryEntry]) -> (Vec<DateTime<Utc>>, Vec<Access>) {
    let mut received = Vec::new();
    let mut access = Vec::new();
    for (i, e) in history.iter().enumerate() {
        if e.stage != Stage::Ingest || !e.what.contains(" purchase)") {
            continue;
        }
        received.push(e.at);
        let applied = history[i + 1..]
            .iter()
            .find(|a| a.stage == Stage::Provision && a.what.starts_with("applied (purchase"));
        if let Some(a) = applied {
            let ms = (a.at - e.at).num_milliseconds().max(0);
            access.push((e.at, ms as f64 / 1000.0));
        }
    }
    (received, access)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub async fn show(State(app): State<Arc<App>>) -> Response {
    let body = async {
        let ledger = app.source.ledger().await?;
        let buyers = ledger.buyers().await?;
        let mut per_day: BTreeMap<String, f64> = BTreeMap::new();
        let mut times: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for b in buyers
            .iter()
            .filter(|b| b.alias_of.is_none())
            .take(MAX_BUYERS)
        {
            let history = ledger
                .history
                .history(&b.email)
                .await
                .map_err(|f| anyhow::anyhow!(f.reason))?;
            let (received, access) = purchases(&history);
            for t in received {
                *per_day.entry(day(t)).or_default() += 1.0;
            }
            for (t, secs) in access {
                times.entry(day(t)).or_default().push(secs);
            }
        }
        let mut parked: BTreeMap<String, f64> = BTreeMap::new();
        for m in app.source.dead_letters().await? {
            if let Some(t) = m.parked_at {
                *parked.entry(day(t)).or_default() += 1.0;
            }
        }
        let last = |m: BTreeMap<String, f64>| -> Vec<(String, f64)> {
            let n = m.len();
            m.into_iter().skip(n.saturating_sub(30)).collect()
        };
        let medians: BTreeMap<String, f64> = times
            .into_iter()
            .map(|(d, mut v)| (d, median(&mut v)))
            .collect();
        let mut out = String::from(
            "<p>The last 30 days with data, from buyers' histories and the dead-letter queues.</p>",
        );
        if buyers.len() > MAX_BUYERS {
            out.push_str(&notice(
                "warn",
                &format!(
                    "Read the histories of {MAX_BUYERS} of {} buyers.",
                    buyers.len()
                ),
            ));
        }
        out.push_str(&bars("Purchases received", "purchases", &last(per_day)));
        out.push_str(&bars("Time to access (median)", "seconds", &last(medians)));
        out.push_str(&bars("Events parked", "events", &last(parked)));
        Ok::<_, anyhow::Error>(out)
    }
    .await;
    render(&app, "Activity", "/activity", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purchase_counts_once_with_its_time_to_access() {
        let t0: DateTime<Utc> = "2026-11-30T10:00:00Z".parse().unwrap();
        let h = vec![
            HistoryEntry::new(t0, Stage::Ingest, "received and verified (stripe purchase)"),
            HistoryEntry::new(
                t0 + chrono::TimeDelta::milliseconds(1500),
                Stage::Provision,
                "applied (purchase of order stripe:o1)",
            ),
            HistoryEntry::new(t0, Stage::Ingest, "received and verified (stripe refund)"),
        ];
        let (received, access) = purchases(&h);
        assert_eq!(received, vec![t0]);
        assert_eq!(access, vec![(t0, 1.5)]);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [1.0, 2.0]), 1.5);
    }
}
