//! Many sellers on one deployment (#16), on AWS: the real `ingest`, `provision` and `align`
//! binaries under `cargo lambda watch`, with the table, the queues and the tenants' secrets in
//! moto, and two sellers, each with its own simulated workspace. The deployment serves tenants
//! only (`ENROLL_CONFIG` empty), as a done-for-you operator runs it.
//!
//! The tenants are stored as the functions read them: a configuration item in the table whose
//! tokens and signing secret are placeholders, and a Secrets Manager secret with the real ones,
//! so the test also shows that the secret, not the item, is what signs and authenticates.
//!
//! The event source mappings are this test, as in `lambda_e2e.rs`: one provision batch carries
//! both sellers' events, so the split by tenant is what keeps them apart.

use anyhow::{ensure, Context, Result};
use chrono::Utc;
use enroll_aws::tenants::{TenantRecord, TenantRegistry};
use enroll_aws::{receive_batch, ReceiveOptions};
use enroll_core::config::Config;
use enroll_core::dead_letters::ATTR_TENANT;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use enroll_core::tenant::TenantId;
use enroll_platforms::Sample;
use enroll_simulator::{Faults, SimHandle};
use enroll_tests::event_source::{batch_failures, deliver, Source};
use enroll_tests::lambda_watch::{self, LambdaWatch};
use enroll_tests::moto::{self, REGION};
use enroll_tests::tenant_fixtures::{parse, scim_down, tenant_toml, workspace};
use serde_json::json;

const PRODUCT: &str = "price_1FormulaFundamentals";
const GROUP: &str = "Formula Fundamentals 2.0";
const SHARED_EVENT: &str = "evt_1SharedByBothSellers0001";
const SCIM_CREATES: &str = "POST /scim/v2/Users";

struct Seller {
    name: TenantId,
    sim: SimHandle,
    /// The configuration as the seller's own tools would sign with it (real secret).
    signer: Config,
}

/// Stores a seller as `enroll tenant add` does: the item without the real secrets, and the
/// secret document with them.
async fn add_seller(
    registry: &TenantRegistry,
    name: &str,
    token: &str,
    stripe_secret: &str,
) -> Result<Seller> {
    let name = TenantId::parse(name)?;
    let sim = workspace(token).await?;
    let stored = tenant_toml(
        "whsec_placeholder_not_the_real_one",
        Some((&sim, "placeholder")),
    );
    registry
        .put(&TenantRecord {
            tenant: name.clone(),
            config: stored,
            added_at: Utc::now(),
            updated_at: Utc::now(),
        })
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let doc = json!({
        "scim_token": token,
        "notion_token": token,
        "platforms": { "stripe": [stripe_secret] },
    });
    registry
        .secrets
        .create_secret()
        .name(registry.secret_id(&name))
        .secret_string(doc.to_string())
        .send()
        .await
        .context("creating the tenant's secret")?;
    let signer = parse(&tenant_toml(stripe_secret, Some((&sim, token))));
    Ok(Seller { name, sim, signer })
}

fn purchase(email: &str, event_id: &str) -> Sample {
    Sample {
        kind: EventKind::Purchase,
        product: PRODUCT.into(),
        email: email.into(),
        name: None,
        order_id: Some(format!("pi_{}", uuid::Uuid::new_v4().simple())),
        event_id: Some(event_id.into()),
    }
}

/// Posts `sample`, signed with `signer`'s Stripe secret, to ingest at `path`.
async fn post(
    watch: &mut LambdaWatch,
    path: &str,
    signer: &Config,
    sample: &Sample,
) -> Result<(u16, String)> {
    let out = enroll_lab::send::request(signer, Platform::Stripe, sample)?;
    watch.post_url("ingest", path, &out.headers, out.body).await
}

fn in_group(sim: &SimHandle, email: &str) -> bool {
    sim.user_by_email(email)
        .is_some_and(|u| sim.group_members(GROUP).contains(&u.id))
}

/// Every SCIM request the workspace answered.
fn scim_requests(sim: &SimHandle) -> u64 {
    sim.counters()
        .iter()
        .filter(|(k, _)| k.contains(" /scim/"))
        .map(|(_, n)| n)
        .sum()
}

fn counter(sim: &SimHandle, endpoint: &str) -> u64 {
    sim.counters().get(endpoint).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sellers_on_one_stack_are_kept_apart_by_the_real_functions() -> Result<()> {
    let bins = ["ingest", "provision", "align"];
    tokio::task::spawn_blocking(move || lambda_watch::prebuild(&bins))
        .await?
        .context("pre-building the function binaries")?;

    let sdk = moto::sdk_config().await;
    let table = moto::unique("enroll-tenants");
    enroll_aws::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await?;
    let prefix = format!("{}/tenant/", moto::unique("stack"));
    let registry = TenantRegistry::new(&sdk, &table, &prefix);
    let alpha = add_seller(&registry, "alpha", "token-alpha", "whsec_alpha_signing").await?;
    let beta = add_seller(&registry, "beta", "token-beta", "whsec_beta_signing").await?;
    let provision_q = Source::new().await?;
    let align_q = Source::new().await?;

    let env = [
        ("AWS_ENDPOINT_URL", moto::endpoint().to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_DEFAULT_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        // Tenants only: no single seller.
        ("ENROLL_CONFIG", String::new()),
        ("ENROLL_TENANT_SECRET_PREFIX", prefix.clone()),
        ("ENROLL_TABLE", table.clone()),
        ("ENROLL_PROVISION_QUEUE_URL", provision_q.pair.url.clone()),
        ("ENROLL_PROVISION_DLQ_URL", provision_q.pair.dlq_url.clone()),
        ("ENROLL_ALIGN_QUEUE_URL", align_q.pair.url.clone()),
        ("ENROLL_ALIGN_DLQ_URL", align_q.pair.dlq_url.clone()),
    ];
    let mut watch = LambdaWatch::start(&env).await?;

    // Routing: each seller's path answers; an unknown seller and the single-seller path do not.
    let (status, body) = watch.get_url("ingest", "/t/alpha/webhooks/stripe").await?;
    ensure!(status == 200, "alpha's webhook path: {status} {body}");
    let (status, _) = watch.get_url("ingest", "/t/gamma/webhooks/stripe").await?;
    ensure!(status == 404, "an unknown tenant: {status}");
    let (status, _) = watch.get_url("ingest", "/webhooks/stripe").await?;
    ensure!(status == 404, "no single seller here: {status}");

    // One buyer per seller, both purchases with the same platform event id.
    let (ada, bob) = ("ada@example.com", "bob@example.com");
    let ada_purchase = purchase(ada, SHARED_EVENT);
    let alpha_path = format!("/t/{}/webhooks/stripe", alpha.name.as_str());
    let beta_path = format!("/t/{}/webhooks/stripe", beta.name.as_str());
    let (s, b) = post(&mut watch, &alpha_path, &alpha.signer, &ada_purchase).await?;
    ensure!(s == 202, "alpha's purchase: {s} {b}");
    let (s, b) = post(
        &mut watch,
        &beta_path,
        &beta.signer,
        &purchase(bob, SHARED_EVENT),
    )
    .await?;
    ensure!(s == 202, "beta's purchase with the same event id: {s} {b}");
    // Beta's signature on alpha's path: 401, nothing queued.
    let carol = "carol@example.com";
    let (s, _) = post(
        &mut watch,
        &alpha_path,
        &beta.signer,
        &purchase(carol, "evt_1Cross"),
    )
    .await?;
    ensure!(s == 401, "another seller's signature: {s}");
    // Alpha's duplicate delivery of its event.
    let (s, _) = post(&mut watch, &alpha_path, &alpha.signer, &ada_purchase).await?;
    ensure!(s == 202, "alpha's duplicate delivery: {s}");

    // One provision batch with both sellers' messages, then align.
    let delivered = deliver(&mut watch, "provision", &provision_q, 3).await?;
    ensure!(
        delivered.len() == 3,
        "3 accepted webhooks queued: {delivered:?}"
    );
    let tenants: Vec<String> = delivered
        .iter()
        .map(|b| enroll_core::tenant::tenant_of_message(b).map(|t| t.as_str().to_owned()))
        .collect::<Result<_, _>>()?;
    ensure!(
        tenants.iter().filter(|t| *t == "alpha").count() == 2
            && tenants.iter().filter(|t| *t == "beta").count() == 1,
        "each message names its seller: {tenants:?}"
    );
    deliver(&mut watch, "align", &align_q, 2).await?;

    // Each seller's buyer is in that seller's workspace only, created once.
    ensure!(
        in_group(&alpha.sim, ada) && !in_group(&beta.sim, ada),
        "ada is alpha's only"
    );
    ensure!(
        in_group(&beta.sim, bob) && !in_group(&alpha.sim, bob),
        "bob is beta's only"
    );
    ensure!(alpha.sim.user_by_email(carol).is_none() && beta.sim.user_by_email(carol).is_none());
    ensure!(counter(&alpha.sim, SCIM_CREATES) == 1, "alpha: one create");
    ensure!(counter(&beta.sim, SCIM_CREATES) == 1, "beta: one create");
    // The same event id was claimed once in each seller's keys.
    let keys = |t: &TenantId| {
        enroll_aws::DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &table)
            .for_tenant(t.clone())
    };
    for (seller, buyer) in [(&alpha, ada), (&beta, bob)] {
        let email = enroll_core::ids::BuyerEmail::parse(buyer)?;
        let record = enroll_core::ports::LedgerStore::buyer(&keys(&seller.name), &email)
            .await
            .map_err(|f| anyhow::anyhow!("{f}"))?
            .with_context(|| format!("{}'s ledger holds {buyer}", seller.name))?;
        ensure!(
            record.notion_user_id.is_some(),
            "{buyer} has a Notion user id"
        );
        let other = if seller.name == alpha.name {
            &beta
        } else {
            &alpha
        };
        ensure!(
            enroll_core::ports::LedgerStore::buyer(&keys(&other.name), &email)
                .await
                .map_err(|f| anyhow::anyhow!("{f}"))?
                .is_none(),
            "{buyer} is not in {}'s ledger",
            other.name
        );
    }

    // A message for a seller the deployment no longer has is parked with the tenant named in
    // its attributes and a reason that says what to do.
    let orphan = enroll_core::tenant::stamp_message(&delivered[0], &TenantId::parse("gamma")?);
    provision_q
        .pair
        .client
        .send_message()
        .queue_url(&provision_q.pair.url)
        .message_body(orphan)
        .send()
        .await?;
    let (event, handles) = provision_q.receive_event(10).await?;
    let response = watch.invoke("provision", &event).await?;
    ensure!(
        batch_failures(&response)?.is_empty(),
        "parked, not retried: {response}"
    );
    provision_q.delete_all(&handles).await?;
    let parked = receive_batch(
        &provision_q.pair.client,
        &provision_q.pair.dlq_url,
        ReceiveOptions {
            wait_seconds: 5,
            ..ReceiveOptions::default()
        },
    )
    .await?;
    ensure!(parked.len() == 1, "one parked message: {parked:?}");
    ensure!(parked[0].attributes.get(ATTR_TENANT).map(String::as_str) == Some("gamma"));
    let reason = parked[0].parked().context("a reason")?.why.reason;
    ensure!(
        reason.contains("tenant gamma is not configured"),
        "{reason}"
    );

    // Fairness: while alpha's SCIM answers 503 to every request, beta's buyers in the very same
    // provision batch get access, with no more SCIM requests per buyer than bob needed alone
    // (a batch shares Group changes, so it can be fewer); only alpha's messages come back for
    // a retry.
    let per_buyer = scim_requests(&beta.sim);
    alpha.sim.set_faults(scim_down());
    for i in 0..3 {
        let (s, _) = post(
            &mut watch,
            &alpha_path,
            &alpha.signer,
            &purchase(&format!("a{i}@alpha.example"), &format!("evt_1Down{i}")),
        )
        .await?;
        ensure!(s == 202);
        let (s, _) = post(
            &mut watch,
            &beta_path,
            &beta.signer,
            &purchase(&format!("b{i}@beta.example"), &format!("evt_1Up{i}")),
        )
        .await?;
        ensure!(s == 202);
    }
    let (event, handles) = provision_q.receive_event(10).await?;
    let records = event["Records"].as_array().map_or(0, Vec::len);
    ensure!(
        records == 6,
        "one batch with both sellers' 6 events: {records}"
    );
    let response = watch.invoke("provision", &event).await?;
    let failed: Vec<String> = batch_failures(&response)?
        .iter()
        .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        failed.len() == 3,
        "alpha's 3 come back for a retry: {response}"
    );
    for r in event["Records"].as_array().into_iter().flatten() {
        let id = r["messageId"].as_str().unwrap_or_default();
        let tenant = enroll_core::tenant::tenant_of_message(r["body"].as_str().unwrap_or("{}"))?;
        ensure!(
            failed.iter().any(|f| f == id) == (tenant == alpha.name),
            "only alpha's fail"
        );
    }
    ensure!(
        (0..3).all(|i| in_group(&beta.sim, &format!("b{i}@beta.example"))),
        "beta's buyers in"
    );
    ensure!((0..3).all(|i| alpha
        .sim
        .user_by_email(&format!("a{i}@alpha.example"))
        .is_none()));
    ensure!(
        scim_requests(&beta.sim) - per_buyer <= 3 * per_buyer,
        "beta: {} SCIM requests for 3 buyers, {per_buyer} for one before",
        scim_requests(&beta.sim) - per_buyer
    );
    for (id, handle) in &handles {
        if !failed.contains(id) {
            enroll_aws::delete(&provision_q.pair.client, &provision_q.pair.url, handle).await?;
        }
    }
    alpha.sim.set_faults(Faults::default());

    // What each seller's invocations counted carries its Tenant dimension (checked by the
    // independent EMF checker), and adds up without it too.
    let log = std::fs::read_to_string(watch.log_path())?;
    let data = enroll_tests::emf::blocks(&log).map_err(|e| anyhow::anyhow!("EMF: {e}"))?;
    let accepted_for = |tenant: &str| -> f64 {
        data.iter()
            .filter(|d| d.name == "WebhooksAccepted")
            .filter(|d| {
                d.dimensions
                    .iter()
                    .any(|(k, v)| k == "Tenant" && v == tenant)
            })
            .flat_map(|d| d.values.clone())
            .sum()
    };
    ensure!(accepted_for("alpha") == 5.0, "alpha accepted 5");
    ensure!(accepted_for("beta") == 4.0, "beta accepted 4");
    ensure!(
        !log.contains(ada) && !log.contains("whsec_alpha_signing"),
        "no address or secret in the logs"
    );
    Ok(())
}
