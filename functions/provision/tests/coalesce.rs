//! A provision batch sends one Group PATCH per Group for all its buyers, and a failed PATCH
//! fails exactly the events whose members it carried.

use async_trait::async_trait;
use chrono::Utc;
use enroll_core::batch::Incoming;
use enroll_core::config::Config;
use enroll_core::event::{Buyer, EventKind, OrderEvent};
use enroll_core::ids::{
    BuyerEmail, EventId, EventKey, GroupId, NotionUserId, OrderId, OrderKey, Platform,
    PlatformProductRef,
};
use enroll_core::ports::{Created, DeadLetters, Directory, ParkedReason, Queue, ScimUser};
use enroll_core::Failure;
use enroll_embedded::store::FileStore;
use provision::Provisioner;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

const CONFIG: &str = r#"
[notion]
database_id = "db1"

[[products]]
id = "course"
name = "Course"
groups = [{ id = "g-course" }, { id = "g-community" }]

[[products]]
id = "ebook"
name = "Ebook"
groups = [{ id = "g-ebook" }]
"#;

/// A directory that records Group PATCHes and can be told to refuse one Group.
#[derive(Default)]
struct Workspace {
    patches: Mutex<Vec<(String, Vec<String>)>>,
    creates: Mutex<usize>,
    failing: Mutex<Option<(String, Failure)>>,
}

impl Workspace {
    fn patches_to(&self, group: &str) -> Vec<Vec<String>> {
        self.patches
            .lock()
            .unwrap()
            .iter()
            .filter(|(g, _)| g == group)
            .map(|(_, m)| m.clone())
            .collect()
    }
}

fn user_of(email: &BuyerEmail) -> NotionUserId {
    NotionUserId::parse(&format!("user-{}", email.as_str())).unwrap()
}

#[async_trait]
impl Directory for Workspace {
    async fn find_user(&self, _: &BuyerEmail) -> Result<Option<ScimUser>, Failure> {
        Ok(None)
    }
    async fn get_user(&self, _: &NotionUserId) -> Result<Option<ScimUser>, Failure> {
        Ok(None)
    }
    async fn create_user(&self, email: &BuyerEmail, _: Option<&str>) -> Result<Created, Failure> {
        *self.creates.lock().unwrap() += 1;
        // Let the other events of the batch run meanwhile, as a real request would.
        tokio::task::yield_now().await;
        Ok(Created::Created(ScimUser {
            id: user_of(email),
            user_name: email.as_str().to_owned(),
            active: true,
            role: None,
        }))
    }
    async fn add_members(&self, group: &GroupId, users: &[NotionUserId]) -> Result<(), Failure> {
        let members = users.iter().map(|u| u.as_str().to_owned()).collect();
        self.patches
            .lock()
            .unwrap()
            .push((group.as_str().to_owned(), members));
        match &*self.failing.lock().unwrap() {
            Some((g, f)) if g == group.as_str() => Err(f.clone()),
            _ => Ok(()),
        }
    }
    async fn remove_members(&self, _: &GroupId, _: &[NotionUserId]) -> Result<(), Failure> {
        Ok(())
    }
    async fn find_group(&self, _: &str) -> Result<Option<GroupId>, Failure> {
        Ok(None)
    }
    async fn remove_user(&self, _: &NotionUserId) -> Result<(), Failure> {
        Ok(())
    }
}

#[derive(Default)]
struct Sink(Mutex<Vec<String>>);

#[async_trait]
impl Queue for Sink {
    async fn send(&self, body: &str) -> Result<(), Failure> {
        self.0.lock().unwrap().push(body.to_owned());
        Ok(())
    }
}

#[async_trait]
impl DeadLetters for Sink {
    async fn park(&self, body: &str, _: &ParkedReason) -> Result<(), Failure> {
        self.0.lock().unwrap().push(body.to_owned());
        Ok(())
    }
}

struct Setup {
    provisioner: Provisioner,
    workspace: Arc<Workspace>,
    store: FileStore,
    align: Arc<Sink>,
    dead: Sink,
}

fn setup() -> Setup {
    let config = Arc::new(Config::from_toml(CONFIG, |_| None).unwrap());
    let store = FileStore::in_memory();
    let workspace = Arc::new(Workspace::default());
    let align = Arc::new(Sink::default());
    let provisioner = Provisioner::new(
        config,
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        workspace.clone(),
        align.clone(),
    );
    Setup {
        provisioner,
        workspace,
        store,
        align,
        dead: Sink::default(),
    }
}

fn purchase(n: usize, product: &str) -> Incoming {
    let event = OrderEvent {
        key: EventKey::new(
            Platform::Stripe,
            EventId::parse(&format!("evt_{n}")).unwrap(),
        ),
        kind: EventKind::Purchase,
        order: OrderKey {
            platform: Platform::Stripe,
            order_id: OrderId::parse(&format!("cs_{n}")).unwrap(),
        },
        buyer: Some(Buyer {
            email: BuyerEmail::parse(&format!("buyer{n}@example.com")).unwrap(),
            name: None,
        }),
        items: vec![PlatformProductRef::parse(product).unwrap()],
        occurred_at: Utc::now(),
        accepted_at: None,
    };
    Incoming {
        receive_count: 1,
        id: format!("msg-{n}"),
        body: serde_json::to_string(&event).unwrap(),
    }
}

async fn run(s: &Setup, batch: &[Incoming]) -> enroll_core::batch::BatchReport {
    let deadline = Utc::now() + chrono::TimeDelta::seconds(60);
    provision::batch::run(&s.provisioner, &s.dead, batch, deadline).await
}

fn groups_applied(s: &Setup, n: usize) -> BTreeSet<String> {
    let email = format!("buyer{n}@example.com");
    s.store
        .buyers()
        .into_iter()
        .find(|b| b.email.as_str() == email)
        .map(|b| {
            b.applied_groups
                .iter()
                .map(|g| g.as_str().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_batch_sends_one_patch_per_group_for_all_its_buyers() {
    let s = setup();
    let batch: Vec<Incoming> = (0..6).map(|n| purchase(n, "course")).collect();
    let report = run(&s, &batch).await;
    assert_eq!(report.succeeded, 6, "{report:?}");
    for group in ["g-course", "g-community"] {
        let patches = s.workspace.patches_to(group);
        assert_eq!(patches.len(), 1, "{group}: {patches:?}");
        assert_eq!(patches[0].len(), 6, "{group}: {patches:?}");
    }
    // One create per new buyer and nothing else: no lookup before it.
    assert_eq!(*s.workspace.creates.lock().unwrap(), 6);
    assert_eq!(s.align.0.lock().unwrap().len(), 6);
    assert!(groups_applied(&s, 3).contains("g-community"));
}

#[tokio::test]
async fn a_failed_patch_fails_exactly_the_events_it_carried_and_loses_none() {
    let s = setup();
    let mut batch: Vec<Incoming> = (0..3).map(|n| purchase(n, "course")).collect();
    batch.extend((3..5).map(|n| purchase(n, "ebook")));
    *s.workspace.failing.lock().unwrap() = Some((
        "g-community".into(),
        Failure::transient("HTTP 503 Service Unavailable"),
    ));

    let report = run(&s, &batch).await;
    assert_eq!(report.failed(), ["msg-0", "msg-1", "msg-2"], "{report:?}");
    assert_eq!(report.succeeded, 2);
    assert_eq!(report.parked, 0);
    // Nothing is recorded as applied for the failed events, so their retry redoes it all.
    assert!(groups_applied(&s, 0).is_empty());
    assert_eq!(
        groups_applied(&s, 3),
        BTreeSet::from(["g-ebook".to_owned()])
    );

    *s.workspace.failing.lock().unwrap() = None;
    let retry: Vec<Incoming> = batch[..3].to_vec();
    let report = run(&s, &retry).await;
    assert_eq!(report.succeeded, 3, "{report:?}");
    for n in 0..3 {
        assert_eq!(
            groups_applied(&s, n),
            BTreeSet::from(["g-course".to_owned(), "g-community".to_owned()])
        );
    }
    let last = s.workspace.patches_to("g-community").pop().unwrap();
    assert_eq!(last.len(), 3, "{last:?}");
}

#[tokio::test]
async fn a_refused_member_does_not_park_its_neighbours() {
    let s = setup();
    let batch: Vec<Incoming> = (0..3).map(|n| purchase(n, "ebook")).collect();
    *s.workspace.failing.lock().unwrap() =
        Some(("g-ebook".into(), Failure::permanent("HTTP 400 Bad Request")));
    let report = run(&s, &batch).await;
    // The fake refuses every PATCH to the Group, so each event is tried alone and parked alone.
    assert_eq!(report.parked, 3, "{report:?}");
    let patches = s.workspace.patches_to("g-ebook");
    assert_eq!(
        patches.len(),
        4,
        "one coalesced, then one per event: {patches:?}"
    );
    assert!(patches[1..].iter().all(|m| m.len() == 1));
}
