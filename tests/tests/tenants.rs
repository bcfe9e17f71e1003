//! Many sellers on one deployment (#16), locally: the done-when through a real
//! `enroll dev --tenants DIR` with two sellers, each pointing at its own SCIM server (isolation,
//! a signature for the wrong tenant, a shared event id), and fairness in process: while one
//! tenant's SCIM fails every request, the other's buyers reach access with the same requests
//! per buyer. No timing assertions: each test waits for outcomes with generous deadlines.

use anyhow::{Context, Result};
use enroll_core::config::Config;
use enroll_core::event::EventKind;
use enroll_core::ids::Platform;
use enroll_core::tenant::TenantId;
use enroll_embedded::admin::{read_dev_record, DevRecord};
use enroll_embedded::store::FileStore;
use enroll_embedded::tenants::{tenant_dir, Tenants};
use enroll_platforms::Sample;
use enroll_simulator::SimHandle;
use enroll_tests::enroll_bin::{scratch_dir, simulated};
use enroll_tests::tenant_fixtures::{parse, scim_down, tenant_toml, workspace};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const PRODUCT: &str = "price_1FormulaFundamentals";
const GROUP: &str = "Formula Fundamentals 2.0";
fn purchase(email: &str, event_id: Option<&str>) -> Sample {
    Sample {
        kind: EventKind::Purchase,
        product: PRODUCT.into(),
        email: email.into(),
        name: None,
        // Unique ids unless given: made-up ids derived from the time could collide.
        order_id: Some(format!("pi_{}", uuid::Uuid::new_v4().simple())),
        event_id: Some(event_id.map_or_else(
            || format!("evt_{}", uuid::Uuid::new_v4().simple()),
            str::to_owned,
        )),
    }
}

/// Posts `sample` signed with `signer`'s Stripe secret to `base`; the status, with any 2xx
/// (ingest answers 202) as 200.
async fn post(signer: &Config, base: &str, sample: &Sample) -> Result<u16> {
    let out = enroll_lab::send::request(signer, Platform::Stripe, sample)?;
    let url = enroll_lab::send::webhook_url(base, Platform::Stripe);
    let (status, _) = enroll_lab::send::post_signed(&reqwest::Client::new(), &url, &out).await?;
    Ok(if (200..300).contains(&status) {
        200
    } else {
        status
    })
}

fn is_member_of_group(sim: &SimHandle, email: &str) -> bool {
    sim.user_by_email(email)
        .is_some_and(|u| sim.group_members(GROUP).contains(&u.id))
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    while !done() {
        anyhow::ensure!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn dev_record(dir: &Path, pid: u32) -> Result<DevRecord> {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(r) = read_dev_record(dir).filter(|r| r.pid == pid) {
            return Ok(r);
        }
        anyhow::ensure!(Instant::now() < until, "no dev.json in {}", dir.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn claimed_keys(data: &Path, tenant: &str, needle: &str) -> Result<usize> {
    let t = TenantId::parse(tenant)?;
    let store = FileStore::open_read_only(&tenant_dir(data, &t).join("store.log"))?;
    Ok(store
        .idempotency_records()
        .iter()
        .filter(|r| r.key.contains(needle))
        .count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_dev_with_two_tenants_keeps_each_sellers_buyers_secrets_and_events_apart(
) -> Result<()> {
    let dir = scratch_dir("tenants-done");
    let (sim_a, sim_b) = (workspace("token-a").await?, workspace("token-b").await?);
    let tenants_dir = dir.join("tenants");
    std::fs::create_dir_all(&tenants_dir)?;
    let text_a = tenant_toml("whsec_seller_a", Some((&sim_a, "token-a")));
    let text_b = tenant_toml("whsec_seller_b", Some((&sim_b, "token-b")));
    std::fs::write(tenants_dir.join("seller-a.toml"), &text_a)?;
    std::fs::write(tenants_dir.join("seller-b.toml"), &text_b)?;
    let (config_a, config_b) = (parse(&text_a), parse(&text_b));
    let data = dir.join("data");
    let mut child = simulated(&[
        "dev",
        "--port",
        "0",
        "--data-dir",
        data.to_str().context("utf-8")?,
        "--tenants",
        tenants_dir.to_str().context("utf-8")?,
        "--expire-every-secs",
        "3600",
    ])?
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()?;
    let result = async {
        let a = TenantId::parse("seller-a")?;
        let b = TenantId::parse("seller-b")?;
        let rec_a = dev_record(&tenant_dir(&data, &a), child.id()).await?;
        let rec_b = dev_record(&tenant_dir(&data, &b), child.id()).await?;
        anyhow::ensure!(
            rec_a.webhook_url.ends_with("/t/seller-a"),
            "{}",
            rec_a.webhook_url
        );
        let root = rec_a.webhook_url.trim_end_matches("/t/seller-a").to_owned();

        // Each seller's buyer lands in that seller's workspace only.
        assert_eq!(
            post(
                &config_a,
                &rec_a.webhook_url,
                &purchase("ann@a.example", None)
            )
            .await?,
            200
        );
        assert_eq!(
            post(
                &config_b,
                &rec_b.webhook_url,
                &purchase("bob@b.example", None)
            )
            .await?,
            200
        );
        wait_for("ann in A", || is_member_of_group(&sim_a, "ann@a.example")).await?;
        wait_for("bob in B", || is_member_of_group(&sim_b, "bob@b.example")).await?;

        // A's signature on B's path: 401, nothing provisioned anywhere.
        assert_eq!(
            post(
                &config_a,
                &rec_b.webhook_url,
                &purchase("eve@a.example", None)
            )
            .await?,
            401
        );
        // An unknown tenant and the single-seller path both answer 404.
        assert_eq!(
            post(
                &config_a,
                &format!("{root}/t/nobody"),
                &purchase("eve@a.example", None)
            )
            .await?,
            404
        );
        assert_eq!(
            post(&config_a, &root, &purchase("eve@a.example", None)).await?,
            404
        );

        // One event id used by both sellers: applied once in each, a duplicate in neither.
        let shared = purchase("sam@shared.example", Some("evt_shared_16"));
        for _ in 0..2 {
            assert_eq!(post(&config_a, &rec_a.webhook_url, &shared).await?, 200);
            assert_eq!(post(&config_b, &rec_b.webhook_url, &shared).await?, 200);
        }
        wait_for("sam in A", || {
            is_member_of_group(&sim_a, "sam@shared.example")
        })
        .await?;
        wait_for("sam in B", || {
            is_member_of_group(&sim_b, "sam@shared.example")
        })
        .await?;
        // Let the duplicates settle, then count the claims each tenant made.
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let (ka, kb) = (
                claimed_keys(&data, "seller-a", "evt_shared_16")?,
                claimed_keys(&data, "seller-b", "evt_shared_16")?,
            );
            if ka == 1 && kb == 1 {
                break;
            }
            anyhow::ensure!(Instant::now() < until, "claims: A {ka}, B {kb}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // `--tenant` picks a tenant's data for the operator commands.
        let ann_id = sim_a.user_by_email("ann@a.example").context("ann")?.id;
        let status_in = |tenant: &str| -> Result<String> {
            let out = simulated(&[
                "status",
                "ann@a.example",
                "--json",
                "--data-dir",
                data.to_str().context("utf-8")?,
                "--tenant",
                tenant,
            ])?
            .output()?;
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let (in_a, in_b) = tokio::task::block_in_place(|| -> Result<_> {
            Ok((status_in("seller-a")?, status_in("seller-b")?))
        })?;
        assert!(in_a.contains(&ann_id), "status --tenant seller-a: {in_a}");
        assert!(!in_b.contains(&ann_id), "status --tenant seller-b: {in_b}");

        assert!(
            sim_b.user_by_email("ann@a.example").is_none(),
            "A's buyer reached B"
        );
        assert!(
            sim_a.user_by_email("bob@b.example").is_none(),
            "B's buyer reached A"
        );
        // `enroll tenant remove` refuses while a tenant's buyers have access; --force removes.
        let tenant_cmd = |extra: &[&str]| -> Result<std::process::Output> {
            let mut args = vec![
                "tenant",
                "--tenants",
                tenants_dir.to_str().context("utf-8")?,
                "--data-dir",
                data.to_str().context("utf-8")?,
            ];
            args.extend_from_slice(extra);
            Ok(simulated(&args)?.output()?)
        };
        tokio::task::block_in_place(|| -> Result<()> {
            let listed = tenant_cmd(&["list"])?;
            let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
            assert!(
                listed.contains("seller-a") && listed.contains("seller-b"),
                "{listed}"
            );
            assert!(!tenant_cmd(&["remove", "seller-a"])?.status.success());
            assert!(tenants_dir.join("seller-a.toml").exists());
            assert!(tenant_cmd(&["remove", "seller-a", "--force"])?
                .status
                .success());
            assert!(!tenants_dir.join("seller-a.toml").exists());
            let example =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/enroll.example.toml");
            let added = tenant_cmd(&[
                "add",
                "seller-c",
                "--config",
                example.to_str().context("utf-8")?,
            ])?;
            assert!(
                added.status.success(),
                "{}",
                String::from_utf8_lossy(&added.stderr)
            );
            assert!(!tenant_cmd(&[
                "add",
                "Bad_Name",
                "--config",
                example.to_str().context("utf-8")?
            ])?
            .status
            .success());
            Ok(())
        })?;
        assert!(sim_a.user_by_email("eve@a.example").is_none());
        assert!(sim_b.user_by_email("eve@a.example").is_none());
        Ok(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_one_tenants_scim_fails_every_request_the_others_buyers_still_get_access(
) -> Result<()> {
    // No tokens: each tenant gets a simulator of its own.
    let mut configs = BTreeMap::new();
    let text_a = tenant_toml("whsec_fair_a", None);
    let text_b = tenant_toml("whsec_fair_b", None);
    configs.insert(TenantId::parse("down")?, parse(&text_a));
    configs.insert(TenantId::parse("up")?, parse(&text_b));
    let tenants = Tenants::start(configs, None, Default::default()).await?;
    let (addr, _server) =
        enroll_embedded::tenants::serve(tenants.clone(), "127.0.0.1:0".parse()?).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = tenants.spawn_workers(stop_rx);
    let down = tenants.get("down").unwrap().clone();
    let up = tenants.get("up").unwrap().clone();
    let (sim_down, sim_up) = (
        down.simulator.as_ref().unwrap(),
        up.simulator.as_ref().unwrap(),
    );
    let scim_requests = |sim: &SimHandle| {
        sim.requests()
            .iter()
            .filter(|r| r.path.starts_with("/scim"))
            .count()
    };
    let (url_down, url_up) = (
        format!("http://{addr}/t/down"),
        format!("http://{addr}/t/up"),
    );
    let (cfg_down, cfg_up) = (parse(&text_a), parse(&text_b));
    // Three new buyers of "up", each posted and in its Group, the queue settled: the SCIM
    // requests they took.
    let three_buyers_of_up = |prefix: &'static str| {
        let (cfg_up, url_up, up) = (&cfg_up, &url_up, &up);
        async move {
            let before = scim_requests(sim_up);
            for i in 0..3 {
                let email = format!("{prefix}{i}@up.example");
                assert_eq!(post(cfg_up, url_up, &purchase(&email, None)).await?, 200);
            }
            wait_for("up's buyers", || {
                (0..3).all(|i| is_member_of_group(sim_up, &format!("{prefix}{i}@up.example")))
            })
            .await?;
            wait_for("up settled", || up.provision_queue.is_empty()).await?;
            anyhow::Ok(scim_requests(sim_up) - before)
        }
    };

    // Warm-up (Group ids resolved once), then the baseline: SCIM requests for 3 buyers of
    // "up" while every tenant is healthy.
    assert_eq!(
        post(&cfg_up, &url_up, &purchase("warm@up.example", None)).await?,
        200
    );
    wait_for("warm-up", || is_member_of_group(sim_up, "warm@up.example")).await?;
    wait_for("warm-up settled", || up.provision_queue.is_empty()).await?;
    let baseline = three_buyers_of_up("base").await?;

    // Tenant "down": its Notion answers 503 to every SCIM request, and it has a spike.
    sim_down.set_faults(scim_down());
    for i in 0..20 {
        assert_eq!(
            post(
                &cfg_down,
                &url_down,
                &purchase(&format!("d{i}@down.example"), None)
            )
            .await?,
            200
        );
    }
    let during = three_buyers_of_up("u").await?;
    // Every "up" buyer got access while "down" still fails: none of its buyers is in.
    assert!((0..20).all(|i| sim_down
        .user_by_email(&format!("d{i}@down.example"))
        .is_none()));
    // And "up" did no extra work for it: the same SCIM requests per buyer as before.
    assert_eq!(during, baseline, "SCIM requests for 3 buyers");

    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    Ok(())
}
