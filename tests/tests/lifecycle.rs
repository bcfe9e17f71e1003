//! Access over time, through the real provision pipeline: a `Provisioner` on the embedded store
//! or on DynamoDB (moto), the real SCIM client over HTTP, and the Notion simulator. Every
//! scenario runs on both stores; the property test generates whole event histories.
//!
//! Catalog (the example's, plus one short product): Notion Mastery (12 months, then Notion
//! Mastery Alumni for good), Formula Fundamentals (for good), Office Hours (90 days, no
//! follow-on).

use anyhow::{anyhow, ensure, Context as _, Result};
use chrono::{DateTime, Months, TimeDelta, Utc};
use enroll_core::catalog::{GroupRef, Product};
use enroll_core::clock::{Clock, ManualClock};
use enroll_core::config::{Config, Deprovision, Secret};
use enroll_core::event::{Buyer, EventKind, OrderEvent};
use enroll_core::ids::{
    BuyerEmail, EventId, EventKey, OrderId, OrderKey, Platform, PlatformProductRef, ProductId,
};
use enroll_core::ledger::BuyerRecord;
use enroll_core::ports::{IdempotencyStore, LedgerStore};
use enroll_embedded::config_file;
use enroll_embedded::journal::Journal;
use enroll_embedded::queue::{EmbeddedQueue, QueueSettings};
use enroll_embedded::store::FileStore;
use enroll_notion::scim::ScimClient;
use enroll_simulator::{Group, SimConfig, SimHandle, SimState, User};
use enroll_tests::moto;
use provision::{Outcome, Provisioner, Reconciled};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

const NM: &str = "Notion Mastery";
const ALUMNI: &str = "Notion Mastery Alumni";
const FF: &str = "Formula Fundamentals 2.0";
const OH: &str = "Office Hours";
/// A Group the seller made by hand: enroll must never touch it.
const STAFF: &str = "Staff";

const P_NM: &str = "notion-mastery";
const P_FF: &str = "formula-fundamentals";
const P_OH: &str = "office-hours";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Embedded,
    Moto,
}

fn config(deprovision: Deprovision) -> Config {
    let mut c = config_file::load(None).expect("the example configuration is valid");
    // The simulator has no rate limit here: the budget only has to stay out of the way.
    c.rate.requests_per_second = 5000.0;
    c.rate.burst = 5000;
    c.provision.deprovision = deprovision;
    c.catalog.products.push(Product {
        id: ProductId::parse(P_OH).unwrap(),
        name: OH.into(),
        platform_ids: BTreeMap::new(),
        groups: vec![GroupRef::Name(OH.into())],
        access_months: None,
        access_days: Some(90),
        then: None,
    });
    c.validate().expect("the test catalog is valid");
    c
}

/// One pipeline: a store, the simulator, and a provisioner wired to both.
struct Harness {
    provisioner: Provisioner,
    ledger: Arc<dyn LedgerStore>,
    sim: SimHandle,
    backend: Backend,
}

impl Harness {
    async fn start(backend: Backend, deprovision: Deprovision) -> Result<Self> {
        Self::seeded(backend, deprovision, |_| {}).await
    }

    /// `seed` adds what the seller had in the workspace before enroll (members, Groups).
    async fn seeded(
        backend: Backend,
        deprovision: Deprovision,
        seed: impl FnOnce(&mut SimState),
    ) -> Result<Self> {
        let mut config = config(deprovision);
        let mut state = enroll_embedded::seed::from_config(&config);
        state.groups.push(group(STAFF));
        seed(&mut state);
        let sim = enroll_simulator::start(
            SimConfig {
                scim_token: "scim-test-token".into(),
                notion_token: "notion-test-token".into(),
                scim_rate_limit: None,
                notion_rate_limit: None,
                admin_token: None,
                max_members_per_patch: None,
                state,
            },
            "127.0.0.1:0".parse()?,
        )
        .await?;
        config.scim.base_url = sim.scim_base_url();
        config.scim.token = Secret::new("scim-test-token");
        let scim = ScimClient::new(
            &config.scim,
            enroll_notion::rate::from_config(config.rate.scim()),
        )
        .map_err(|f| anyhow!(f.reason))?;
        let (idempotency, ledger): (Arc<dyn IdempotencyStore>, Arc<dyn LedgerStore>) = match backend
        {
            Backend::Embedded => {
                let s = Arc::new(FileStore::in_memory());
                (s.clone(), s)
            }
            Backend::Moto => {
                let s = Arc::new(moto::store().await?);
                (s.clone(), s)
            }
        };
        let align = EmbeddedQueue::new(
            "align",
            Arc::new(Mutex::new(Journal::in_memory())),
            QueueSettings::default(),
            None,
        );
        Ok(Self {
            provisioner: Provisioner::new(
                Arc::new(config),
                idempotency,
                ledger.clone(),
                Arc::new(scim),
                align,
            ),
            ledger,
            sim,
            backend,
        })
    }

    async fn send(&self, event: &OrderEvent, now: DateTime<Utc>) -> Result<Outcome> {
        self.provisioner
            .process(event, now, now + TimeDelta::seconds(60))
            .await
            .map_err(|f| anyhow!("{} {}: {f}", event.kind.as_str(), event.key))
    }

    async fn applied(&self, event: &OrderEvent, now: DateTime<Utc>) -> Result<Reconciled> {
        match self.send(event, now).await? {
            Outcome::Applied(r) => Ok(r),
            other => Err(anyhow!("expected the event to be applied, got {other:?}")),
        }
    }

    /// The expiry pass; on DynamoDB through the expire function's own entry point.
    async fn expire(&self, now: DateTime<Utc>) -> Result<provision::ExpiryReport> {
        match self.backend {
            Backend::Embedded => self
                .provisioner
                .expire_due(now)
                .await
                .map_err(|f| anyhow!("{f}")),
            Backend::Moto => expire::run_pass(&self.provisioner, now)
                .await
                .map_err(|e| anyhow!("{e}")),
        }
    }

    async fn link(&self, alias: &str, existing: &str, merge: bool) -> Result<()> {
        self.provisioner
            .link(&email(alias), &email(existing), merge, Utc::now())
            .await
            .map(|_| ())
            .map_err(|f| anyhow!("{f}"))
    }

    async fn buyer(&self, address: &str) -> Result<BuyerRecord> {
        self.ledger
            .buyer(&email(address))
            .await
            .map_err(|f| anyhow!("{f}"))?
            .ok_or_else(|| anyhow!("no buyer record for {address}"))
    }

    /// The workspace member whose userName or email is `address`, if a member.
    fn member(&self, address: &str) -> Option<User> {
        self.sim.user_by_email(address).filter(User::is_member)
    }

    fn user(&self, id: &str) -> Option<User> {
        self.sim.state().users.into_iter().find(|u| u.id == id)
    }

    fn groups_of_id(&self, id: &str) -> BTreeSet<String> {
        self.sim
            .state()
            .groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m == id))
            .map(|g| g.display_name.clone())
            .collect()
    }

    /// Every Group the member with this address is in; empty when not a member.
    fn groups(&self, address: &str) -> BTreeSet<String> {
        self.member(address)
            .map(|u| self.groups_of_id(&u.id))
            .unwrap_or_default()
    }

    fn members(&self) -> usize {
        self.sim
            .state()
            .users
            .iter()
            .filter(|u| u.is_member())
            .count()
    }

    fn scim_writes(&self) -> u64 {
        self.sim
            .counters()
            .iter()
            .filter(|(k, _)| {
                k.contains("/scim/")
                    && (k.starts_with("POST") || k.starts_with("PATCH") || k.starts_with("DELETE"))
            })
            .map(|(_, v)| *v)
            .sum()
    }

    /// The seller edits an account in Notion: a new email (and userName), or a new role.
    fn edit_user(&self, id: &str, edit: impl FnOnce(&mut User)) {
        let mut state = self.sim.state();
        let user = state
            .users
            .iter_mut()
            .find(|u| u.id == id)
            .expect("the user exists");
        edit(user);
        self.sim.set_state(state);
    }

    fn add_to_group(&self, id: &str, group: &str) {
        let mut state = self.sim.state();
        state
            .groups
            .iter_mut()
            .find(|g| g.display_name == group)
            .expect("the Group exists")
            .members
            .push(id.to_owned());
        self.sim.set_state(state);
    }
}

fn group(name: &str) -> Group {
    Group {
        id: uuid::Uuid::new_v4().to_string(),
        display_name: name.into(),
        external_id: None,
        members: Vec::new(),
        created: Utc::now(),
        last_modified: Utc::now(),
    }
}

fn seed_user(address: &str, role: &str) -> User {
    User {
        id: uuid::Uuid::new_v4().to_string(),
        user_name: address.into(),
        external_id: None,
        name: None,
        display_name: None,
        emails: vec![enroll_simulator::Email {
            value: address.into(),
            kind: Some("work".into()),
            primary: true,
        }],
        active: true,
        deleted: false,
        role: role.into(),
        created: Utc::now(),
        last_modified: Utc::now(),
    }
}

fn email(address: &str) -> BuyerEmail {
    BuyerEmail::parse(address).expect("a valid test email")
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn event(
    id: &str,
    kind: EventKind,
    order: &str,
    buyer: Option<&str>,
    products: &[&str],
    at: DateTime<Utc>,
) -> OrderEvent {
    OrderEvent {
        key: EventKey::new(Platform::Stripe, EventId::parse(id).unwrap()),
        kind,
        order: OrderKey {
            platform: Platform::Stripe,
            order_id: OrderId::parse(order).unwrap(),
        },
        buyer: buyer.map(|b| Buyer {
            email: email(b),
            name: Some("Test Buyer".into()),
        }),
        items: products
            .iter()
            .map(|p| PlatformProductRef::parse(p).unwrap())
            .collect(),
        occurred_at: at,
        accepted_at: None,
    }
}

fn purchase(order: &str, buyer: &str, products: &[&str], at: DateTime<Utc>) -> OrderEvent {
    event(
        &format!("evt_{order}"),
        EventKind::Purchase,
        order,
        Some(buyer),
        products,
        at,
    )
}

fn revoke(kind: EventKind, order: &str, buyer: Option<&str>, at: DateTime<Utc>) -> OrderEvent {
    event(
        &format!("evt_{order}_{}", kind.as_str()),
        kind,
        order,
        buyer,
        &[],
        at,
    )
}

fn months(t: DateTime<Utc>, m: u32) -> DateTime<Utc> {
    t.checked_add_months(Months::new(m)).expect("in range")
}

/// One test per store for each scenario.
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() -> anyhow::Result<()> {
                super::$scenario(super::Backend::Embedded).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn moto() -> anyhow::Result<()> {
                super::$scenario(super::Backend::Moto).await
            }
        }
    )*};
}

on_both_stores!(
    upgrade_only_adds,
    refunding_one_product_keeps_what_another_grants,
    revocation_before_purchase_keeps_it_revoked,
    duplicates_change_nothing,
    twelve_months_then_alumni,
    email_change_in_notion_keeps_one_member,
    linked_email_reaches_the_same_member,
    merging_an_email_with_its_own_member,
    merging_two_records_of_one_member,
    deprovision_keep_leaves_a_member_without_managed_groups,
    deprovision_remove_takes_the_member_out_and_back,
    owners_admins_and_earlier_members_are_never_removed,
    unmanaged_groups_are_left_alone,
);

async fn upgrade_only_adds(backend: Backend) -> Result<()> {
    let h = Harness::start(backend, Deprovision::Remove).await?;
    let t = Utc::now();
    h.applied(&purchase("o_ff", "ada@example.com", &[P_FF], t), t)
        .await?;
    let upgrade = h
        .applied(&purchase("o_nm", "ada@example.com", &[P_NM], t), t)
        .await?;
    ensure!(upgrade.removed.is_empty() && upgrade.added.len() == 1 && !upgrade.created);
    ensure!(h.groups("ada@example.com") == set(&[FF, NM]));
    ensure!(h.members() == 1);
    Ok(())
}

async fn refunding_one_product_keeps_what_another_grants(backend: Backend) -> Result<()> {
    let h = Harness::start(backend, Deprovision::Remove).await?;
    let t = Utc::now();
    let ada = "ada@example.com";
    h.applied(&purchase("o_ff", ada, &[P_FF], t), t).await?;
    h.applied(&purchase("o_nm", ada, &[P_NM], t), t).await?;
    // The same product twice (a second seat bought later): one refund leaves the other.
    h.applied(&purchase("o_ff2", ada, &[P_FF], t), t).await?;
    h.applied(&revoke(EventKind::Refund, "o_nm", Some(ada), t), t)
        .await?;
    ensure!(
        h.groups(ada) == set(&[FF]),
        "after the NM refund: {:?}",
        h.groups(ada)
    );
    let r = h
        .applied(&revoke(EventKind::Chargeback, "o_ff", Some(ada), t), t)
        .await?;
    ensure!(r.removed.is_empty() && !r.removed_from_workspace);
    ensure!(h.groups(ada) == set(&[FF]));
    h.applied(&revoke(EventKind::Cancel, "o_ff2", Some(ada), t), t)
        .await?;
    ensure!(h.groups(ada).is_empty() && h.member(ada).is_none());
    Ok(())
}

async fn revocation_before_purchase_keeps_it_revoked(backend: Backend) -> Result<()> {
    let h = Harness::start(backend, Deprovision::Keep).await?;
    let t = Utc::now();
    for (i, kind) in [EventKind::Refund, EventKind::Chargeback, EventKind::Cancel]
        .into_iter()
        .enumerate()
    {
        let buyer = format!("late{i}@example.com");
        let order = format!("o_late_{i}");
        // Some platforms send the revocation without the buyer: the order is kept anyway.
        let who = (i != 1).then_some(buyer.as_str());
        match h.send(&revoke(kind, &order, who, t), t).await? {
            Outcome::Recorded(_) | Outcome::Applied(_) => {}
            Outcome::Duplicate => return Err(anyhow!("a first delivery is no duplicate")),
        }
        h.send(&purchase(&order, &buyer, &[P_NM, P_FF], t), t)
            .await?;
        ensure!(h.member(&buyer).is_none(), "{kind:?}: no member is created");
        let later = months(t, 13);
        h.expire(later).await?;
        ensure!(
            h.member(&buyer).is_none(),
            "{kind:?}: no alumni access either"
        );
    }
    ensure!(h.members() == 0 && h.scim_writes() == 0);
    Ok(())
}

async fn duplicates_change_nothing(backend: Backend) -> Result<()> {
    let h = Harness::start(backend, Deprovision::Keep).await?;
    let t = Utc::now();
    let ada = "ada@example.com";
    let buy = purchase("o1", ada, &[P_NM], t);
    h.applied(&buy, t).await?;
    let writes = h.scim_writes();
    ensure!(h.send(&buy, t).await? == Outcome::Duplicate);
    let refund = revoke(EventKind::Refund, "o1", Some(ada), t);
    h.applied(&refund, t).await?;
    let after_refund = h.scim_writes();
    ensure!(after_refund > writes);
    ensure!(h.send(&refund, t).await? == Outcome::Duplicate);
    ensure!(h.send(&buy, t).await? == Outcome::Duplicate);
    ensure!(h.scim_writes() == after_refund, "duplicates wrote to SCIM");
    // Once the idempotency key has expired, a very late copy is applied again, and the
    // ledger still changes nothing.
    let much_later = t + TimeDelta::days(30);
    match h.send(&buy, much_later).await? {
        Outcome::Applied(r) => ensure!(
            r == Reconciled {
                user: r.user.clone(),
                ..Reconciled::default()
            }
        ),
        other => return Err(anyhow!("expected a no-op re-apply, got {other:?}")),
    }
    ensure!(h.groups(ada).is_empty() && h.scim_writes() == after_refund);
    Ok(())
}

async fn twelve_months_then_alumni(backend: Backend) -> Result<()> {
    let h = Harness::start(backend, Deprovision::Keep).await?;
    let t = Utc::now();
    let ada = "ada@example.com";
    let bob = "bob@example.com";
    h.applied(&purchase("o_nm", ada, &[P_NM], t), t).await?;
    h.applied(&purchase("o_oh", bob, &[P_OH, P_FF], t), t)
        .await?;
    let nm_end = months(t, 12);
    ensure!(h.buyer(ada).await?.next_change_at == Some(nm_end));

    let report = h.expire(t + TimeDelta::days(30)).await?;
    ensure!(report.reconciled == 0, "nobody is due yet: {report:?}");
    ensure!(h.groups(ada) == set(&[NM]) && h.groups(bob) == set(&[FF, OH]));

    let report = h.expire(t + TimeDelta::days(91)).await?;
    ensure!(
        report.reconciled == 1 && report.groups_removed == 1,
        "{report:?}"
    );
    ensure!(
        h.groups(bob) == set(&[FF]),
        "Office Hours ended: {:?}",
        h.groups(bob)
    );
    ensure!(h.groups(ada) == set(&[NM]));

    let report = h.expire(nm_end + TimeDelta::seconds(1)).await?;
    ensure!(
        report.reconciled == 1 && report.groups_added == 1,
        "{report:?}"
    );
    ensure!(h.groups(ada) == set(&[ALUMNI]));
    ensure!(
        h.buyer(ada).await?.next_change_at.is_none(),
        "alumni access has no end"
    );
    let again = h.expire(months(t, 24)).await?;
    ensure!(again.reconciled == 0, "nothing stays due: {again:?}");

    // A refund after the handover takes the follow-on too: it came from the same order.
    h.applied(
        &revoke(EventKind::Refund, "o_nm", Some(ada), nm_end),
        months(t, 13),
    )
    .await?;
    ensure!(h.groups(ada).is_empty());
    Ok(())
}

async fn email_change_in_notion_keeps_one_member(backend: Backend) -> Result<()> {
    let h = Harness::start(backend, Deprovision::Keep).await?;
    let t = Utc::now();
    let ada = "ada@example.com";
    h.applied(&purchase("o1", ada, &[P_FF], t), t).await?;
    let id = h.member(ada).context("ada is a member")?.id;
    let renamed = |to: &'static str| {
        move |u: &mut User| {
            u.user_name = to.into();
            u.emails = vec![enroll_simulator::Email {
                value: to.into(),
                kind: Some("work".into()),
                primary: true,
            }];
        }
    };
    h.edit_user(&id, renamed("ada.lovelace@newmail.example"));

    // A later purchase under the address she paid with first reaches the same account.
    let r = h.applied(&purchase("o2", ada, &[P_NM], t), t).await?;
    ensure!(!r.created && r.user.as_ref().map(|u| u.as_str()) == Some(id.as_str()));
    ensure!(h.members() == 1, "no second member");
    ensure!(h.groups_of_id(&id) == set(&[FF, NM]));

    // With no managed Group left the stored id is checked once more, and still wins.
    h.applied(&revoke(EventKind::Refund, "o1", Some(ada), t), t)
        .await?;
    h.applied(&revoke(EventKind::Refund, "o2", Some(ada), t), t)
        .await?;
    ensure!(h.groups_of_id(&id).is_empty());
    h.edit_user(&id, renamed("ada@third.example"));
    let r = h.applied(&purchase("o3", ada, &[P_OH], t), t).await?;
    ensure!(!r.created && h.members() == 1);
    ensure!(h.groups_of_id(&id) == set(&[OH]));

    // The seller deactivates her; a new purchase brings the same account back.
    h.applied(&revoke(EventKind::Refund, "o3", Some(ada), t), t)
        .await?;
    h.edit_user(&id, |u| u.active = false);
    h.applied(&purchase("o4", ada, &[P_FF], t), t).await?;
    let back = h.user(&id).context("the account survives")?;
    ensure!(
        back.is_member() && h.members() == 1,
        "reactivated, not duplicated"
    );
    ensure!(h.groups_of_id(&id) == set(&[FF]));
    Ok(())
}

async fn linked_email_reaches_the_same_member(backend: Backend) -> Result<()> {
    let h = Harness::start(backend, Deprovision::Remove).await?;
    let t = Utc::now();
    let ada = "ada@example.com";
    let work = "ada@work.example";
    h.applied(&purchase("o1", ada, &[P_FF], t), t).await?;
    let id = h.member(ada).context("ada is a member")?.id;

    let unknown = h.link(work, "nobody@example.com", false).await;
    ensure!(unknown.is_err(), "linking to an unknown buyer is refused");
    h.link(work, ada, false).await?;
    h.link(work, ada, false).await?; // linking twice is harmless

    h.applied(&purchase("o2", work, &[P_NM], t), t).await?;
    ensure!(h.member(work).is_none() && h.members() == 1);
    ensure!(h.groups_of_id(&id) == set(&[FF, NM]));
    ensure!(h.buyer(work).await?.alias_of == Some(email(ada)));
    ensure!(h.buyer(ada).await?.orders.len() == 2);

    // Revocations and expiry reach the linked purchase through the existing buyer.
    h.applied(&revoke(EventKind::Refund, "o1", Some(ada), t), t)
        .await?;
    ensure!(h.groups_of_id(&id) == set(&[NM]));
    h.expire(months(t, 12) + TimeDelta::seconds(1)).await?;
    ensure!(h.groups_of_id(&id) == set(&[ALUMNI]));
    h.applied(&revoke(EventKind::Chargeback, "o2", Some(work), t), t)
        .await?;
    ensure!(
        h.user(&id).is_some_and(|u| !u.is_member()),
        "removed at the end"
    );
    Ok(())
}

async fn merging_an_email_with_its_own_member(backend: Backend) -> Result<()> {
    let h = Harness::start(backend, Deprovision::Keep).await?;
    let t = Utc::now();
    let bob = "bob@example.com";
    let alt = "bob.alt@example.com";
    h.applied(&purchase("o1", bob, &[P_FF], t), t).await?;
    h.applied(&purchase("o2", alt, &[P_NM], t), t).await?;
    let bob_id = h.member(bob).context("bob")?.id;
    let alt_id = h.member(alt).context("bob.alt")?.id;
    ensure!(bob_id != alt_id);

    let refused = h.link(alt, bob, false).await;
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("--merge")),
        "an email with orders of its own needs --merge: {refused:?}"
    );
    ensure!(
        h.groups_of_id(&alt_id) == set(&[NM]),
        "a refused link changes nothing"
    );

    h.link(alt, bob, true).await?;
    ensure!(h.groups_of_id(&bob_id) == set(&[FF, NM]));
    ensure!(
        h.groups_of_id(&alt_id).is_empty(),
        "the second member leaves the Groups"
    );
    ensure!(
        h.user(&alt_id).is_some_and(|u| u.is_member()),
        "kept: policy keep"
    );

    h.applied(&revoke(EventKind::Refund, "o2", Some(alt), t), t)
        .await?;
    ensure!(h.groups_of_id(&bob_id) == set(&[FF]));
    ensure!(h.groups_of_id(&alt_id).is_empty());
    Ok(())
}

/// A buyer pays again with the address their Notion account uses now: SCIM finds the same
/// member, and the seller joins the two records with a merge.
async fn merging_two_records_of_one_member(backend: Backend) -> Result<()> {
    let h = Harness::start(backend, Deprovision::Remove).await?;
    let t = Utc::now();
    let old = "ada@example.com";
    let new = "ada@new.example";
    h.applied(&purchase("o1", old, &[P_FF], t), t).await?;
    let id = h.member(old).context("ada")?.id;
    h.edit_user(&id, |u| {
        u.user_name = new.into();
        u.emails.clear();
    });
    h.applied(&purchase("o2", new, &[P_NM], t), t).await?;
    ensure!(h.members() == 1 && h.groups_of_id(&id) == set(&[FF, NM]));

    h.link(new, old, true).await?;
    ensure!(h.groups_of_id(&id) == set(&[FF, NM]) && h.members() == 1);
    h.applied(&revoke(EventKind::Refund, "o1", Some(old), t), t)
        .await?;
    ensure!(
        h.groups_of_id(&id) == set(&[NM]),
        "the merged purchase still grants NM"
    );
    h.applied(&revoke(EventKind::Refund, "o2", Some(new), t), t)
        .await?;
    ensure!(
        h.user(&id).is_some_and(|u| !u.is_member()),
        "removed with nothing left"
    );
    Ok(())
}

async fn deprovision_keep_leaves_a_member_without_managed_groups(backend: Backend) -> Result<()> {
    let h = Harness::start(backend, Deprovision::Keep).await?;
    let t = Utc::now();
    let ada = "ada@example.com";
    h.applied(&purchase("o1", ada, &[P_NM, P_FF], t), t).await?;
    let r = h
        .applied(&revoke(EventKind::Refund, "o1", Some(ada), t), t)
        .await?;
    ensure!(r.removed.len() == 2 && !r.removed_from_workspace);
    ensure!(h.member(ada).is_some() && h.groups(ada).is_empty());
    Ok(())
}

async fn deprovision_remove_takes_the_member_out_and_back(backend: Backend) -> Result<()> {
    let h = Harness::start(backend, Deprovision::Remove).await?;
    let t = Utc::now();
    let ada = "ada@example.com";
    h.applied(&purchase("o1", ada, &[P_OH], t), t).await?;
    let id = h.member(ada).context("ada is a member")?.id;
    // Access that runs out removes the member as a refund does.
    let later = t + TimeDelta::days(91);
    h.expire(later).await?;
    ensure!(h.member(ada).is_none(), "removed when the last grant ended");
    let r = h
        .applied(&purchase("o2", ada, &[P_FF], later), later)
        .await?;
    ensure!(
        r.user.as_ref().map(|u| u.as_str()) == Some(id.as_str()),
        "the same account"
    );
    ensure!(h.groups(ada) == set(&[FF]));
    h.applied(&revoke(EventKind::Refund, "o2", Some(ada), later), later)
        .await?;
    ensure!(h.member(ada).is_none());
    Ok(())
}

async fn owners_admins_and_earlier_members_are_never_removed(backend: Backend) -> Result<()> {
    let earlier = "colleague@example.com";
    let h = Harness::seeded(backend, Deprovision::Remove, |s| {
        s.users.push(seed_user(earlier, "member"));
    })
    .await?;
    let t = Utc::now();
    // Students whom the seller later made owner or admin.
    for (i, role) in ["owner", "membership_admin"].into_iter().enumerate() {
        let who = format!("promoted{i}@example.com");
        let order = format!("o_{role}");
        h.applied(&purchase(&order, &who, &[P_FF], t), t).await?;
        let id = h.member(&who).context("a member")?.id;
        h.edit_user(&id, |u| u.role = role.into());
        let r = h
            .applied(&revoke(EventKind::Refund, &order, Some(&who), t), t)
            .await?;
        ensure!(!r.removed_from_workspace, "{role} stays in the workspace");
        ensure!(h.member(&who).is_some() && h.groups(&who).is_empty());
    }
    // Someone who was a member before buying is not enroll's to remove.
    h.applied(&purchase("o_c", earlier, &[P_FF], t), t).await?;
    h.applied(&revoke(EventKind::Refund, "o_c", Some(earlier), t), t)
        .await?;
    ensure!(h.member(earlier).is_some() && h.groups(earlier).is_empty());
    Ok(())
}

async fn unmanaged_groups_are_left_alone(backend: Backend) -> Result<()> {
    let carol = "carol@example.com";
    let seeded = seed_user(carol, "member");
    let carol_id = seeded.id.clone();
    let h = Harness::seeded(backend, Deprovision::Remove, |s| {
        s.users.push(seeded);
        let staff = s
            .groups
            .iter_mut()
            .find(|g| g.display_name == STAFF)
            .expect("seeded");
        staff.members.push(carol_id.clone());
    })
    .await?;
    let t = Utc::now();
    h.applied(&purchase("o_c", carol, &[P_FF], t), t).await?;
    ensure!(h.groups(carol) == set(&[FF, STAFF]));
    h.applied(&revoke(EventKind::Refund, "o_c", Some(carol), t), t)
        .await?;
    ensure!(h.groups(carol) == set(&[STAFF]));

    // A student the seller also put in a Group of their own keeps it when access changes.
    let dan = "dan@example.com";
    h.applied(&purchase("o_d", dan, &[P_NM], t), t).await?;
    let dan_id = h.member(dan).context("dan")?.id;
    h.add_to_group(&dan_id, STAFF);
    h.expire(months(t, 12) + TimeDelta::seconds(1)).await?;
    ensure!(h.groups(dan) == set(&[ALUMNI, STAFF]));
    let staff = h.sim.group_members(STAFF);
    ensure!(staff.len() == 2 && staff.contains(&carol_id) && staff.contains(&dan_id));
    Ok(())
}

/// The expire function's handler on DynamoDB, invoked as EventBridge would invoke it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expire_function_hands_over_to_alumni_on_schedule() -> Result<()> {
    let mut h = Harness::start(Backend::Moto, Deprovision::Keep).await?;
    let clock = ManualClock::starting_now();
    h.provisioner = h.provisioner.with_clock(Arc::new(clock.clone()));
    let ada = "ada@example.com";
    let now = clock.now();
    // Bought a year ago, less two seconds: the handler runs at its clock's current time.
    let bought = now.checked_sub_months(Months::new(12)).expect("in range") + TimeDelta::seconds(2);
    h.applied(&purchase("o1", ada, &[P_NM], bought), now)
        .await?;
    ensure!(h.groups(ada) == set(&[NM]));
    // The year of access ends while the schedule waits for its next run.
    clock.advance(TimeDelta::seconds(3));
    let scheduled = serde_json::json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": clock.now().to_rfc3339(),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/enroll-expire"],
        "detail": {}
    });
    let deps = expire::Deps::single(h.provisioner);
    let report = expire::function_handler(
        &deps,
        lambda_runtime::LambdaEvent::new(scheduled, lambda_runtime::Context::default()),
    )
    .await?;
    ensure!(report.reconciled == 1, "{report:?}");
    let id = h.sim.user_by_email(ada).context("ada is a member")?.id;
    let groups: BTreeSet<String> = h
        .sim
        .state()
        .groups
        .iter()
        .filter(|g| g.members.contains(&id))
        .map(|g| g.display_name.clone())
        .collect();
    ensure!(groups == set(&[ALUMNI]), "{groups:?}");
    Ok(())
}

/// `enroll link` on the embedded default's data directory, as the seller runs it between two
/// runs of `enroll dev`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_link_on_a_data_directory() -> Result<()> {
    use enroll_embedded::runtime::{Options, Runtime};
    let dir = std::env::temp_dir().join(format!("enroll-link-{}", uuid::Uuid::new_v4()));
    let start = || async {
        Runtime::start(Options {
            config: config(Deprovision::Keep),
            data_dir: Some(dir.clone()),
            timings: Default::default(),
            simulate: true,
        })
        .await
    };
    let t = Utc::now();
    let rt = start().await?;
    rt.provisioner
        .process(
            &purchase("o1", "ada@example.com", &[P_FF], t),
            t,
            t + TimeDelta::seconds(60),
        )
        .await
        .map_err(|f| anyhow!("{f}"))?;
    rt.save_simulator()?;
    drop(rt);

    // The seller's command, on the directory no `enroll dev` owns now.
    let out = enroll_tests::enroll_bin::simulated(&[
        "link",
        "Ada@Work.example",
        "ada@example.com",
        "--data-dir",
        dir.to_str().context("a UTF-8 path")?,
    ])?
    .output()?;
    ensure!(
        out.status.success(),
        "enroll link failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: provision::link::LinkReport = serde_json::from_slice(&out.stdout)?;
    ensure!(report.buyer == "ada@example.com" && report.alias == "ada@work.example");

    let rt = start().await?;
    rt.provisioner
        .process(
            &purchase("o2", "ada@work.example", &[P_NM], t),
            t,
            t + TimeDelta::seconds(60),
        )
        .await
        .map_err(|f| anyhow!("{f}"))?;
    let sim = rt.simulator.as_ref().context("simulated")?;
    let state = sim.state();
    ensure!(state.users.len() == 1, "one member: {:?}", state.users);
    let id = &state.users[0].id;
    let mut groups: Vec<_> = state
        .groups
        .iter()
        .filter(|g| g.members.contains(id))
        .map(|g| g.display_name.as_str())
        .collect();
    groups.sort();
    ensure!(groups == [FF, NM], "{groups:?}");
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

mod property {
    //! Whole histories: purchases, refunds, chargebacks, cancellations and duplicates of any of
    //! them, in any order, with expiry passes in between. Whatever the order, the Groups in the
    //! simulator end up as the ledger's rules say, computed here from the history alone.

    use super::*;
    use proptest::prelude::*;

    const BUYERS: usize = 3;
    const PRODUCTS: [&str; 3] = [P_NM, P_FF, P_OH];
    const KINDS: [EventKind; 3] = [EventKind::Refund, EventKind::Chargeback, EventKind::Cancel];

    #[derive(Debug, Clone)]
    struct Order {
        buyer: usize,
        products: Vec<&'static str>,
        purchased: bool,
        /// Minutes after the start of the history.
        at: i64,
        /// (kind, carries the buyer's email)
        revocations: Vec<(EventKind, bool)>,
    }

    #[derive(Debug, Clone)]
    enum Step {
        Event(OrderEvent),
        Expire,
    }

    fn origin() -> DateTime<Utc> {
        "2026-01-05T09:00:00Z".parse().unwrap()
    }

    fn buyer_email(i: usize) -> String {
        format!("buyer{i}@example.com")
    }

    fn order_strategy() -> impl Strategy<Value = Order> {
        (
            0..BUYERS,
            proptest::sample::subsequence(PRODUCTS.to_vec(), 1..=2),
            proptest::bool::weighted(0.85),
            0i64..60 * 24 * 60,
            proptest::collection::vec(
                (proptest::sample::select(KINDS.to_vec()), any::<bool>()),
                0..=2,
            ),
        )
            .prop_map(|(buyer, products, purchased, at, revocations)| Order {
                buyer,
                products,
                purchased,
                at,
                revocations,
            })
    }

    /// Every event of the history, each delivered once or more.
    fn events(orders: &[Order], copies: &[u8]) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut n = 0;
        let mut deliver = |steps: &mut Vec<Step>, e: OrderEvent| {
            let times = 1 + usize::from(copies[n % copies.len()] % 3);
            n += 1;
            for _ in 0..times {
                steps.push(Step::Event(e.clone()));
            }
        };
        for (i, o) in orders.iter().enumerate() {
            let order = format!("ord_{i}");
            let buyer = buyer_email(o.buyer);
            let at = origin() + TimeDelta::minutes(o.at);
            if o.purchased {
                deliver(&mut steps, purchase(&order, &buyer, &o.products, at));
            }
            for (j, (kind, with_buyer)) in o.revocations.iter().enumerate() {
                let e = event(
                    &format!("evt_{order}_r{j}"),
                    *kind,
                    &order,
                    with_buyer.then_some(buyer.as_str()),
                    &[],
                    at + TimeDelta::days(1),
                );
                deliver(&mut steps, e);
            }
        }
        steps
    }

    /// The rules, stated independently of the ledger's code: a purchase grants its products'
    /// Groups unless any revocation of its order exists; 12 months of Notion Mastery are
    /// followed by alumni access; Office Hours lasts 90 days.
    fn expected(orders: &[Order], at: DateTime<Utc>) -> Vec<BTreeSet<String>> {
        let mut groups = vec![BTreeSet::new(); BUYERS];
        for o in orders
            .iter()
            .filter(|o| o.purchased && o.revocations.is_empty())
        {
            let start = origin() + TimeDelta::minutes(o.at);
            for p in &o.products {
                let g = match *p {
                    P_NM if at < months(start, 12) => Some(NM),
                    P_NM => Some(ALUMNI),
                    P_FF => Some(FF),
                    P_OH if at < start + TimeDelta::days(90) => Some(OH),
                    _ => None,
                };
                groups[o.buyer].extend(g.map(str::to_owned));
            }
        }
        groups
    }

    fn cases() -> u32 {
        std::env::var("ENROLL_PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(24)
    }

    async fn run_history(
        orders: Vec<Order>,
        steps: Vec<Step>,
        mut clock: Vec<i64>,
        end: i64,
        remove: bool,
    ) -> Result<()> {
        let policy = if remove {
            Deprovision::Remove
        } else {
            Deprovision::Keep
        };
        let h = Harness::start(Backend::Embedded, policy).await?;
        // Events are handled after everything they describe happened; the clock never goes
        // back, and the last expiry pass runs at the end.
        let first = origin() + TimeDelta::days(61) + TimeDelta::seconds(30);
        clock.sort_unstable();
        for (i, step) in steps.iter().enumerate() {
            let minutes = clock[i * clock.len() / steps.len()].min(end);
            let now = first + TimeDelta::minutes(minutes);
            match step {
                Step::Event(e) => {
                    h.send(e, now).await?;
                }
                Step::Expire => {
                    let r = h.expire(now).await?;
                    ensure!(r.failed == 0, "{r:?}");
                }
            }
        }
        let end = first + TimeDelta::minutes(end);
        let r = h.expire(end).await?;
        ensure!(r.failed == 0, "{r:?}");
        let want = expected(&orders, end);
        for (i, want) in want.iter().enumerate() {
            let address = buyer_email(i);
            let got = h.groups(&address);
            ensure!(
                &got == want,
                "{address}: Groups {got:?}, the rules say {want:?} at {end}"
            );
            if remove && want.is_empty() {
                ensure!(
                    h.member(&address).is_none(),
                    "{address} has no access left and should have been removed"
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: cases(),
            max_shrink_iters: 64,
            ..ProptestConfig::default()
        })]

        #[test]
        fn final_groups_follow_the_rules_whatever_the_order(
            (orders, steps) in proptest::collection::vec(order_strategy(), 1..=6)
                .prop_flat_map(|orders| {
                    let copies = proptest::collection::vec(any::<u8>(), 1..=8);
                    let passes = 0usize..=3;
                    (Just(orders), copies, passes)
                })
                .prop_flat_map(|(orders, copies, passes)| {
                    let mut steps = events(&orders, &copies);
                    steps.extend(std::iter::repeat_n(Step::Expire, passes));
                    (Just(orders), Just(steps).prop_shuffle())
                }),
            clock in proptest::collection::vec(0i64..480 * 24 * 60, 1..=12),
            end in 0i64..480 * 24 * 60,
            remove in any::<bool>(),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let outcome = runtime.block_on(run_history(orders, steps, clock, end, remove));
            prop_assert!(outcome.is_ok(), "{:#}", outcome.unwrap_err());
        }
    }
}
