//! `enroll dev --outbound-echo`: a receiver on 127.0.0.1 that verifies each event's Standard
//! Webhooks signature (with the same code ingest verifies Standard Webhooks senders with) and
//! prints one line per event, so a seller can watch the events without an endpoint of their
//! own. It answers 204 to a verified event and 401 otherwise. The line masks the buyer's email.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use enroll_core::config::{OutboundConfig, PlatformConfig, Secret};
use enroll_core::outbound::EventType;
use enroll_platforms::Inbound;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// A new `whsec_` secret of 32 random bytes.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The `[[outbound]]` entry that sends every event type to the echo at `addr`.
pub fn endpoint(addr: SocketAddr, secret: &str) -> OutboundConfig {
    OutboundConfig {
        url: format!("http://{addr}/outbound-echo"),
        secret: Secret::new(secret),
        events: EventType::ALL.to_vec(),
        timeout_secs: 10,
    }
}

/// The line printed for one request: what came and whether its signature holds.
pub fn describe(secret: &str, headers: &HeaderMap, body: &[u8]) -> (bool, String) {
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let cfg = PlatformConfig {
        secrets: vec![Secret::new(secret)],
        ..PlatformConfig::default()
    };
    let req = Inbound {
        method: "POST",
        query: None,
        headers: &headers,
        body,
    };
    let verified = enroll_platforms::standard::verify(&cfg, &req, chrono::Utc::now());
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let data = &v["data"];
    let list = |k: &str| {
        data[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|g| g.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let email = enroll_core::redact::mask_email(data["email"].as_str().unwrap_or(""));
    match verified {
        Ok((id, _)) => (
            true,
            format!(
                "outbound-echo: {} {id} verified: {email} groups [{}] added [{}] removed [{}]",
                v["type"].as_str().unwrap_or("?"),
                list("groups"),
                list("added"),
                list("removed")
            ),
        ),
        Err(e) => (
            false,
            format!("outbound-echo: signature NOT verified: {}", e.reason),
        ),
    }
}

/// Serves the echo on `addr` (port 0: any free one) until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    secret: String,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let secret = Arc::new(secret);
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let secret = secret.clone();
        async move {
            let (ok, line) = describe(&secret, &headers, &body);
            println!("{line}");
            if ok {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::UNAUTHORIZED
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "outbound echo stopped");
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echo_verifies_what_notify_signs_and_refuses_a_forgery() {
        let secret = new_secret();
        let ep = endpoint("127.0.0.1:1".parse().unwrap(), &secret);
        let body = br#"{"type":"access.granted","timestamp":"t","data":{"email":"ada@example.com","groups":["A"],"added":["A"],"removed":[]}}"#;
        let ts = chrono::Utc::now().timestamp();
        let sig =
            enroll_platforms::standard::signature(&ep.key_bytes().unwrap(), "msg_1", ts, body);
        let mut h = HeaderMap::new();
        h.insert("webhook-id", "msg_1".parse().unwrap());
        h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        h.insert("webhook-signature", sig.parse().unwrap());
        let (ok, line) = describe(&secret, &h, body);
        assert!(ok, "{line}");
        assert!(line.contains("access.granted msg_1 verified"), "{line}");
        assert!(!line.contains("ada@example.com"), "{line}");
        let (ok, _) = describe(&new_secret(), &h, body);
        assert!(!ok);
    }
}
