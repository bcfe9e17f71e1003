//! The seeded scenario: purchases across products and platforms, refunds before and after their
//! purchases, and duplicate deliveries, in delivery order, with the Groups each buyer should
//! end up in by the plan alone.

use enroll_core::catalog::GroupRef;
use enroll_core::config::Config;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use enroll_platforms::Sample;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

/// One webhook delivery of the plan.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub platform: Platform,
    pub sample: Sample,
    /// Index of the distinct event this delivers.
    pub event: usize,
}

/// The seeded scenario: what is delivered, in which order, and what it should come to.
#[derive(Debug, Default)]
pub struct Plan {
    pub deliveries: Vec<Delivery>,
    /// Per distinct event: the buyer (lowercased address).
    pub buyer_of: Vec<String>,
    /// Per buyer: the Groups their unrefunded purchases grant, by the plan alone.
    pub expected: BTreeMap<String, BTreeSet<GroupRef>>,
    pub duplicates: usize,
    pub early_refunds: usize,
    pub late_refunds: usize,
}

fn order_id(platform: Platform, seed: u64, j: usize) -> String {
    let numeric = || {
        format!(
            "{}",
            4_000_000_000u64 + (seed % 1000) * 1_000_000 + j as u64
        )
    };
    match platform {
        Platform::Stripe => format!("pi_chaos{seed}x{j}"),
        Platform::Paddle => format!("txn_chaos{seed}x{j}"),
        Platform::Standard => format!("ord_chaos{seed}x{j}"),
        Platform::Gumroad => format!("chaos{seed}x{j}"),
        Platform::Shopify | Platform::LemonSqueezy | Platform::ThriveCart => numeric(),
        Platform::Mapped(_) => format!("chaos{seed}x{j}"),
    }
}

/// Builds the seeded plan: `events` distinct events, in delivery order; `duplicates` and
/// `early_refunds` are shares of `events` (as many refunds again come after their purchase).
pub fn plan(
    config: &Config,
    events: usize,
    duplicates: f64,
    early_refunds: f64,
    seed: u64,
) -> anyhow::Result<Plan> {
    plan_for(
        config,
        events,
        duplicates,
        early_refunds,
        seed,
        "example.com",
    )
}

/// [`plan`] with the buyers' addresses at `domain`: the same seed gives every tenant the same
/// deliveries, event ids and order ids, with buyers of its own.
pub fn plan_for(
    config: &Config,
    events: usize,
    duplicates: f64,
    early_refunds: f64,
    seed: u64,
    domain: &str,
) -> anyhow::Result<Plan> {
    let mut rng = StdRng::seed_from_u64(seed);
    let refunds_each = ((events as f64) * early_refunds).round() as usize;
    let purchases = events.saturating_sub(2 * refunds_each);
    anyhow::ensure!(
        purchases >= refunds_each.max(1),
        "too few events for {refunds_each} early and {refunds_each} late refunds"
    );
    // Products a checkout sells: those with platform references (follow-ons have none).
    let products: Vec<_> = config
        .catalog
        .products
        .iter()
        .filter(|p| !p.platform_ids.is_empty())
        .collect();
    anyhow::ensure!(!products.is_empty(), "the catalog sells no product");
    let buyers = (purchases * 5 / 8).max(1);
    let domain = domain.to_lowercase();
    let capitalised = {
        let mut c = domain.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect::<String>())
            .unwrap_or_default()
    };
    let buyer = |b: usize| format!("chaos.buyer{b}@{domain}");
    let email = |b: usize, rng: &mut StdRng| {
        // Some buyers type their address with capitals on some checkouts.
        if b % 5 == 0 && rng.gen_bool(0.5) {
            format!("Chaos.Buyer{b}@{capitalised}")
        } else {
            buyer(b)
        }
    };

    let mut out = Plan::default();
    // (position, delivery): sorted at the end into delivery order.
    let mut timeline: Vec<(f64, Delivery)> = Vec::new();
    let mut bought: Vec<(usize, Platform, String, String, String, GroupRefs)> = Vec::new();
    for j in 0..purchases {
        let b = rng.gen_range(0..buyers);
        let platform = Platform::ALL[rng.gen_range(0..Platform::ALL.len())];
        let product = products[rng.gen_range(0..products.len())];
        let reference = product
            .platform_ids
            .get(&platform)
            .and_then(|r| r.first())
            .map(|r| r.as_str().to_owned())
            .unwrap_or_else(|| product.id.as_str().to_owned());
        let order = order_id(platform, seed, j);
        let groups: GroupRefs = product.groups.iter().cloned().collect();
        let event = out.buyer_of.len();
        out.buyer_of.push(buyer(b));
        timeline.push((
            j as f64,
            Delivery {
                platform,
                sample: Sample {
                    kind: EventKind::Purchase,
                    product: reference.clone(),
                    email: email(b, &mut rng),
                    name: Some(format!("Chaos Buyer {b}")),
                    order_id: Some(order.clone()),
                    event_id: Some(format!("evt_chaos{seed}x{j}p")),
                },
                event,
            },
        ));
        bought.push((b, platform, reference, order, email(b, &mut rng), groups));
    }
    // Distinct purchases get the refunds: the first half of a shuffle early, the rest late.
    let mut order: Vec<usize> = (0..purchases).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    let mut refunded = BTreeSet::new();
    for (n, &j) in order.iter().take(2 * refunds_each).enumerate() {
        let early = n < refunds_each;
        let (b, platform, reference, order_id, address, _) = bought[j].clone();
        let at = if early {
            rng.gen_range(-1.0..j as f64)
        } else {
            rng.gen_range(j as f64..purchases as f64) + 0.5
        };
        let event = out.buyer_of.len();
        out.buyer_of.push(buyer(b));
        timeline.push((
            at,
            Delivery {
                platform,
                sample: Sample {
                    kind: EventKind::Refund,
                    product: reference,
                    email: address,
                    name: None,
                    order_id: Some(order_id),
                    event_id: Some(format!("evt_chaos{seed}x{j}r")),
                },
                event,
            },
        ));
        refunded.insert(j);
        if early {
            out.early_refunds += 1;
        } else {
            out.late_refunds += 1;
        }
    }
    for (j, (b, .., groups)) in bought.iter().enumerate() {
        let entry = out.expected.entry(buyer(*b)).or_default();
        if !refunded.contains(&j) {
            entry.extend(groups.iter().cloned());
        }
    }
    // A platform retries some time after the first attempt, with the same event.
    out.duplicates = ((events as f64) * duplicates).round() as usize;
    for _ in 0..out.duplicates {
        let (at, original) = timeline[rng.gen_range(0..timeline.len())].clone();
        let later = at + rng.gen_range(0.1..(purchases as f64 / 10.0).max(1.0));
        timeline.push((later, original));
    }
    timeline.sort_by(|a, b| a.0.total_cmp(&b.0));
    out.deliveries = timeline.into_iter().map(|(_, d)| d).collect();
    Ok(out)
}

type GroupRefs = BTreeSet<GroupRef>;
