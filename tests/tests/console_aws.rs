//! `enroll console` on AWS resources (DynamoDB and SQS in moto), the way an operator points it
//! at a deployed stack's table and queues: the page needs the token, the Dead letters page lists
//! a message parked in the provision dead-letter queue with its reason and masked buyer, and the
//! replay confirmed on the page (with its CSRF value and origin) moves it back to the provision
//! queue. Activity renders from the table; Catalog from the configuration, saying why the
//! workspace's members are missing when no SCIM token is given.

use anyhow::{Context, Result};
use enroll_aws::SqsDeadLetters;
use enroll_core::ports::{DeadLetters, ParkedReason};
use enroll_tests::console::Console;
use enroll_tests::{enroll_bin, moto};

async fn depth(client: &aws_sdk_sqs::Client, url: &str) -> Result<usize> {
    let attrs = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await?;
    Ok(attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lists_and_replays_dead_letters_on_aws() -> Result<()> {
    let sdk = moto::sdk_config().await;
    let table = moto::unique("console");
    moto::create_table(&sdk, &table).await?;
    let provision = moto::queue_with_dlq(3, 30).await?;
    let align = moto::queue_with_dlq(3, 30).await?;
    SqsDeadLetters::new(provision.client.clone(), &provision.dlq_url, "provision")
        .park(
            r#"{"not":"shown"}"#,
            &ParkedReason {
                reason: "SCIM add members: 400 unknown Group \"Course\"".into(),
                event_key: Some("stripe:evt_console_aws".into()),
                buyer: Some("c***@e***.com".into()),
            },
        )
        .await?;

    let mut cmd = enroll_bin::simulated(&[
        "console",
        "--table",
        &table,
        "--provision-queue-url",
        &provision.url,
        "--provision-dlq-url",
        &provision.dlq_url,
        "--align-queue-url",
        &align.url,
        "--align-dlq-url",
        &align.dlq_url,
    ])?;
    cmd.env("AWS_ENDPOINT_URL", moto::endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1");
    let console = tokio::task::spawn_blocking(move || Console::start(cmd)).await??;
    let base = console.base.clone();

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    assert_eq!(
        http.get(format!("{base}/dead-letters"))
            .send()
            .await?
            .status(),
        401,
        "no token, no page"
    );
    let cookie = console.session(&http).await?;
    let get = |path: &str| {
        http.get(format!("{base}{path}"))
            .header("cookie", &cookie)
            .send()
    };

    let page = get("/dead-letters").await?;
    assert_eq!(page.status(), 200);
    let page = page.text().await?;
    assert!(page.contains("unknown Group"), "the reason: {page}");
    assert!(page.contains("c***@e***.com"), "the masked buyer: {page}");
    assert!(page.contains("stripe:evt_console_aws"), "the key: {page}");
    assert!(
        !page.contains("not&quot;:&quot;shown") && !page.contains("\"not\""),
        "no body"
    );
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .context("no CSRF field on the page")?
        .to_owned();

    let post = |path: &str, form: String| {
        http.post(format!("{base}{path}"))
            .header("cookie", &cookie)
            .header("origin", &base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    let form = format!("mode=all&csrf={csrf}");
    let preview = post("/dead-letters/preview", form.clone()).await?;
    assert_eq!(preview.status(), 200);
    let preview = preview.text().await?;
    assert!(preview.contains("would be replayed (1)"), "{preview}");
    assert_eq!(
        depth(&provision.client, &provision.url).await?,
        0,
        "a preview moves nothing"
    );

    let replayed = post("/dead-letters/replay", form).await?;
    assert_eq!(replayed.status(), 200);
    let replayed = replayed.text().await?;
    assert!(replayed.contains("Replayed 1 message(s)."), "{replayed}");
    assert_eq!(
        depth(&provision.client, &provision.url).await?,
        1,
        "back in the provision queue"
    );
    assert_eq!(
        depth(&provision.client, &provision.dlq_url).await?,
        0,
        "gone from the DLQ"
    );

    let activity = get("/activity").await?;
    assert_eq!(activity.status(), 200);
    let text = activity.text().await?;
    assert!(!text.contains("could not"), "the table scan: {text}");
    // No secret is named here, so the catalog comes from the configuration and says why the
    // members per Group are missing instead of failing the page.
    let catalog = get("/catalog").await?;
    assert_eq!(catalog.status(), 200);
    let text = catalog.text().await?;
    assert!(text.contains("price_1NotionMasteryYear"), "{text}");
    assert!(text.contains("no SCIM token"), "{text}");
    Ok(())
}
