//! `enroll demo`: the whole flow in one process, with checks.
//!
//! A webhook server, the workers and the Notion simulator start in memory; a scripted set of
//! genuinely signed webhooks (Stripe and Standard Webhooks, two products, a duplicate delivery,
//! an upgrade, a refund that keeps another product's access, a refund that arrives before its
//! purchase, a product the catalog does not know, a forged signature) goes over HTTP; then an
//! expiry pass one year later moves Notion Mastery buyers to the alumni Group. Each expectation is
//! checked against the simulator's state, and any failure makes the command exit non-zero.

use crate::send;
use anyhow::Context;
use chrono::{Months, Utc};
use enroll_core::config::Config;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use enroll_embedded::runtime::{Options, Runtime};
use enroll_platforms::Sample;
use enroll_simulator::{PropertyValue, SimState};
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct DemoBuyer {
    pub email: String,
    pub notion_user_id: Option<String>,
    pub groups: Vec<String>,
    pub record_written: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub buyers: Vec<DemoBuyer>,
    pub checks: Counts,
    #[serde(skip)]
    pub check_list: Vec<Check>,
}

const ADA: &str = "ada@example.com";
const GRACE: &str = "grace@example.com";
const LINUS: &str = "linus@example.com";
const MARGARET: &str = "margaret@example.com";
const EBOOK: &str = "reader@example.com";

const FF: &str = "Formula Fundamentals 2.0";
const NM: &str = "Notion Mastery";
const ALUMNI: &str = "Notion Mastery Alumni";

struct Script {
    rt: Arc<Runtime>,
    base: String,
    http: reqwest::Client,
    checks: Vec<Check>,
}

impl Script {
    fn check(&mut self, name: &str, passed: bool, detail: Option<String>) {
        self.checks.push(Check {
            name: name.to_owned(),
            passed,
            detail: if passed { None } else { detail },
        });
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &mut self,
        platform: Platform,
        kind: EventKind,
        product: &str,
        email: &str,
        order: &str,
        event: &str,
        expect: u16,
    ) -> anyhow::Result<()> {
        let sample = Sample {
            kind,
            product: product.to_owned(),
            email: email.to_owned(),
            name: Some(title_case(email)),
            order_id: Some(order.to_owned()),
            event_id: Some(event.to_owned()),
        };
        let secret = send::signing_secret(&self.rt.config, platform)?;
        let url = send::webhook_url(&self.base, platform);
        let (status, _) = send::post(&self.http, &url, platform, &sample, &secret).await?;
        self.check(
            &format!("{platform} {} {event} answered {expect}", kind.as_str()),
            status == expect,
            Some(format!("got {status}")),
        );
        Ok(())
    }

    async fn settle(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.rt.settle(Duration::from_secs(120)).await,
            "queues did not drain within 2 minutes"
        );
        Ok(())
    }

    fn sim(&self) -> SimState {
        self.rt.simulator_state().unwrap_or_default()
    }

    fn scim_writes(&self) -> u64 {
        let sim = self
            .rt
            .simulator
            .as_ref()
            .expect("the demo runs on the simulator");
        sim.counters()
            .iter()
            .filter(|(k, _)| {
                k.starts_with("POST /scim")
                    || k.starts_with("PATCH /scim")
                    || k.starts_with("DELETE /scim")
            })
            .map(|(_, v)| *v)
            .sum()
    }

    fn expect_groups(&mut self, when: &str, email: &str, expected: &[&str]) {
        let got = groups_of(&self.sim(), email);
        let want: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        self.check(
            &format!("{when}: {} is in exactly {:?}", email, expected),
            got == want,
            Some(format!("found {got:?}")),
        );
    }
}

fn title_case(email: &str) -> String {
    let local = email.split('@').next().unwrap_or(email);
    let mut c = local.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn user_id(state: &SimState, email: &str) -> Option<String> {
    state
        .users
        .iter()
        .find(|u| u.user_name.eq_ignore_ascii_case(email) && !u.deleted)
        .map(|u| u.id.clone())
}

fn groups_of(state: &SimState, email: &str) -> BTreeSet<String> {
    let Some(id) = user_id(state, email) else {
        return BTreeSet::new();
    };
    state
        .groups
        .iter()
        .filter(|g| g.members.contains(&id))
        .map(|g| g.display_name.clone())
        .collect()
}

fn record_written(state: &SimState, config: &Config, email: &str) -> bool {
    let Some(id) = user_id(state, email) else {
        return false;
    };
    let prop = &config.notion.properties.notion_user_id;
    state.pages.iter().any(|p| {
        matches!(p.properties.get(prop), Some(PropertyValue::RichText(parts)) if parts.concat() == id)
    })
}

/// Runs the demo; `rate` is the simulated Notion budget in requests per second.
pub async fn run(mut config: Config, rate: f64) -> anyhow::Result<DemoReport> {
    // The one simulated budget, for SCIM and the public API alike, whatever the file set.
    let burst = config.rate.burst.max(rate.ceil() as u32);
    config.rate = enroll_core::config::RateConfig::uniform(rate, burst);
    let rt = Runtime::start(Options {
        config,
        data_dir: None,
        timings: Default::default(),
        simulate: true,
    })
    .await?;
    let (addr, server) = enroll_embedded::server::serve(rt.clone(), "127.0.0.1:0".parse()?).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = rt.spawn_workers(stop_rx);
    let mut s = Script {
        rt: rt.clone(),
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        checks: Vec::new(),
    };
    let result = script(&mut s).await;
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    server.abort();
    result.context("demo script")?;

    let state = s.sim();
    let buyers = [ADA, GRACE, LINUS, MARGARET]
        .iter()
        .map(|e| DemoBuyer {
            email: (*e).to_owned(),
            notion_user_id: user_id(&state, e),
            groups: groups_of(&state, e).into_iter().collect(),
            record_written: record_written(&state, &rt.config, e),
        })
        .collect();
    let failed = s.checks.iter().filter(|c| !c.passed).count();
    Ok(DemoReport {
        buyers,
        checks: Counts {
            passed: s.checks.len() - failed,
            failed,
        },
        check_list: s.checks,
    })
}

async fn script(s: &mut Script) -> anyhow::Result<()> {
    use EventKind::*;
    use Platform::*;
    // 1. A Stripe purchase, then the same delivery again: SCIM writes after each.
    let mut after = [0; 2];
    for writes in &mut after {
        s.send(
            Stripe,
            Purchase,
            "price_1FormulaFundamentals",
            ADA,
            "pi_demo_ada_ff",
            "evt_demo_ada_ff",
            202,
        )
        .await?;
        s.settle().await?;
        *writes = s.scim_writes();
    }
    let [writes, again] = after;
    s.check(
        "a duplicate delivery makes no second SCIM write",
        again == writes,
        Some(format!("{writes} writes before, {again} after")),
    );

    // 2. A Standard Webhooks purchase of the other product.
    s.send(
        Standard,
        Purchase,
        "notion-mastery",
        GRACE,
        "ord_demo_grace_nm",
        "msg_demo_grace_nm",
        202,
    )
    .await?;
    // 3. An upgrade: Ada adds Notion Mastery to Formula Fundamentals.
    s.send(
        Standard,
        Purchase,
        "notion-mastery",
        ADA,
        "ord_demo_ada_nm",
        "msg_demo_ada_nm",
        202,
    )
    .await?;
    // 4. Two products, one refunded: the other keeps its Group.
    s.send(
        Stripe,
        Purchase,
        "price_1FormulaFundamentals",
        LINUS,
        "pi_demo_linus_ff",
        "evt_demo_linus_ff",
        202,
    )
    .await?;
    s.send(
        Stripe,
        Purchase,
        "price_1NotionMasteryYear",
        LINUS,
        "pi_demo_linus_nm",
        "evt_demo_linus_nm",
        202,
    )
    .await?;
    s.settle().await?;
    s.send(
        Stripe,
        Refund,
        "price_1NotionMasteryYear",
        LINUS,
        "pi_demo_linus_nm",
        "evt_demo_linus_nm_refund",
        202,
    )
    .await?;
    // 5. A refund that arrives before its purchase: the purchase stays revoked.
    s.send(
        Stripe,
        Refund,
        "price_1FormulaFundamentals",
        MARGARET,
        "pi_demo_margaret_ff",
        "evt_demo_margaret_refund",
        202,
    )
    .await?;
    s.settle().await?;
    s.send(
        Stripe,
        Purchase,
        "price_1FormulaFundamentals",
        MARGARET,
        "pi_demo_margaret_ff",
        "evt_demo_margaret_ff",
        202,
    )
    .await?;
    // 6. A product the catalog does not know: accepted, recorded, never provisioned.
    s.send(
        Stripe,
        Purchase,
        "price_unknown_ebook",
        EBOOK,
        "pi_demo_ebook",
        "evt_demo_ebook",
        202,
    )
    .await?;
    s.settle().await?;

    // 7. A forged signature is refused and enqueues nothing.
    let sample = Sample {
        kind: Purchase,
        product: "notion-mastery".into(),
        email: "mallory@example.com".into(),
        name: None,
        order_id: Some("pi_forged".into()),
        event_id: Some("evt_forged".into()),
    };
    let url = send::webhook_url(&s.base, Stripe);
    let (status, _) =
        send::post(&s.http, &url, Stripe, &sample, "whsec_not_the_real_secret").await?;
    s.check(
        "a forged Stripe signature is refused with 401",
        status == 401,
        Some(format!("got {status}")),
    );
    s.check(
        "nothing was enqueued for the forged request",
        s.rt.provision_queue.is_empty(),
        None,
    );

    s.expect_groups("after the purchases", ADA, &[FF, NM]);
    s.expect_groups("after the purchases", GRACE, &[NM]);
    s.expect_groups("after the refund of one order", LINUS, &[FF]);
    s.expect_groups("after a refund that came first", MARGARET, &[]);
    let state = s.sim();
    s.check(
        "the unknown product created no member",
        user_id(&state, EBOOK).is_none(),
        None,
    );
    let unknown_recorded = s.rt.store.all_orders().iter().any(|o| {
        o.unknown_items
            .iter()
            .any(|i| i.as_str() == "price_unknown_ebook")
    });
    s.check(
        "the unknown product is recorded for the operator",
        unknown_recorded,
        None,
    );
    for e in [ADA, GRACE, LINUS] {
        let written = record_written(&state, &s.rt.config, e);
        s.check(
            &format!("the sales record of {e} holds the Notion user id"),
            written,
            None,
        );
    }
    // Align finds a row by order id, then by email: a returning buyer's row is reused.
    let pages = state.pages.len();
    s.check(
        "one sales record per provisioned buyer, none twice",
        pages == 3,
        Some(format!("{pages} records")),
    );

    // 8. A year later: Notion Mastery access ends and alumni access begins.
    let later = Utc::now()
        .checked_add_months(Months::new(12))
        .unwrap_or_else(Utc::now)
        + chrono::TimeDelta::days(1);
    let report = s.rt.expire(later).await?;
    s.check(
        "the expiry pass reconciled every buyer it found due",
        report.failed == 0 && report.reconciled >= 2,
        Some(format!("{report:?}")),
    );
    s.settle().await?;
    s.expect_groups("after expiry", GRACE, &[ALUMNI]);
    s.expect_groups("after expiry", ADA, &[FF, ALUMNI]);
    s.expect_groups("after expiry", LINUS, &[FF]);
    let dlq = s.rt.provision_dlq().len() + s.rt.align_dlq().len();
    s.check(
        "no event ended in a dead-letter queue",
        dlq == 0,
        Some(format!("{dlq} parked")),
    );
    Ok(())
}

/// The table the demo prints.
pub fn print(report: &DemoReport) {
    println!(
        "{:<24} {:<38} {:<48} record",
        "buyer", "Notion user id", "Groups"
    );
    for b in &report.buyers {
        println!(
            "{:<24} {:<38} {:<48} {}",
            b.email,
            b.notion_user_id.as_deref().unwrap_or("-"),
            if b.groups.is_empty() {
                "-".into()
            } else {
                b.groups.join(", ")
            },
            if b.record_written { "written" } else { "-" }
        );
    }
    println!();
    for c in &report.check_list {
        println!(
            "{} {}{}",
            if c.passed { "✓" } else { "✗" },
            c.name,
            c.detail
                .as_ref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        );
    }
    println!(
        "\n{} checks passed, {} failed",
        report.checks.passed, report.checks.failed
    );
}
