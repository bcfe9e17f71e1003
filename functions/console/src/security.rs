//! Who may use the console, and how a page that is not the console is kept out.
//!
//! - The console listens on 127.0.0.1 only, and answers only requests whose `Host` is that
//!   address and port (a DNS-rebinding page names its own host).
//! - A random token (32 bytes from the operating system's CSPRNG) is printed once. The first
//!   request carrying `?token=` gets an `HttpOnly; SameSite=Strict` session cookie (another
//!   random value) and a redirect to the same path without the token, so the token leaves the
//!   address bar and the history. Anything else without the cookie is answered 401.
//! - A request that changes state is a POST carrying the per-process CSRF value as the form
//!   field `csrf`, and an `Origin` (else `Referer`) of exactly `http://127.0.0.1:N`; missing
//!   both is refused. Every comparison of a secret is constant-time.
//! - Every answer carries a strict Content-Security-Policy, `X-Frame-Options: DENY`,
//!   `Referrer-Policy: same-origin` and `Cache-Control: no-store`. The referrer policy is
//!   `same-origin`, not `no-referrer`: under `no-referrer` browsers send `Origin: null` with a
//!   form POST, which the origin check must refuse; `same-origin` still sends no referrer to any
//!   other site.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::rngs::OsRng;
use rand::RngCore;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "enroll_console";
/// The largest form the console reads.
const MAX_FORM: usize = 64 * 1024;

pub const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                       script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The secrets of one console process.
pub struct Guard {
    token: String,
    session: String,
    csrf: String,
    origin: String,
    host: String,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn same(given: &str, expected: &str) -> bool {
    // Lengths are not secret (all values are 64 hex digits); contents are compared in
    // constant time.
    given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

impl Guard {
    /// Fresh secrets for a console bound to 127.0.0.1:`port`.
    pub fn new(port: u16) -> Self {
        Self {
            token: random_hex(),
            session: random_hex(),
            csrf: random_hex(),
            origin: format!("http://127.0.0.1:{port}"),
            host: format!("127.0.0.1:{port}"),
        }
    }

    /// The address to print: the only way in.
    pub fn url(&self) -> String {
        format!("{}/?token={}", self.origin, self.token)
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The value every form carries as its hidden `csrf` field.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    pub fn token_ok(&self, given: &str) -> bool {
        same(given, &self.token)
    }

    pub fn csrf_ok(&self, given: &str) -> bool {
        same(given, &self.csrf)
    }

    /// The `Set-Cookie` value that opens the session.
    pub fn set_cookie(&self) -> String {
        format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
            self.session
        )
    }

    /// Whether a `Cookie` header carries the session.
    pub fn cookie_ok(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(k, v)| k == COOKIE && same(v, &self.session))
    }

    pub fn host_ok(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| h == self.host)
    }

    /// Same origin: `Origin` when present, else `Referer`; neither is a refusal.
    pub fn origin_ok(&self, headers: &HeaderMap) -> bool {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        if let Some(origin) = text(header::ORIGIN) {
            return origin == self.origin;
        }
        match text(header::REFERER) {
            Some(r) => r
                .strip_prefix(self.origin.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            None => false,
        }
    }
}

/// The `token` query parameter, and the query without it.
pub fn split_token(query: &str) -> (Option<String>, String) {
    let mut token = None;
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == "token" {
            token = Some(v.into_owned());
        } else {
            rest.append_pair(&k, &v);
        }
    }
    (token, rest.finish())
}

/// The `csrf` field of a urlencoded form.
pub fn form_csrf(body: &[u8]) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned())
}

fn refuse(status: StatusCode, why: &str) -> Response {
    let page = crate::html::bare_page(
        &status.to_string(),
        &format!("<p>{}</p>", crate::html::esc(why)),
    );
    (status, page).into_response()
}

/// The gate in front of every route; adds the security headers to every answer.
pub async fn gate(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let mut resp = check(&guard, req, next).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn check(guard: &Guard, req: Request, next: Next) -> Response {
    if !guard.host_ok(req.headers()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this console answers on 127.0.0.1 only",
        );
    }
    let (token, rest) = split_token(req.uri().query().unwrap_or(""));
    if let Some(token) = token {
        if !guard.token_ok(&token) {
            return refuse(StatusCode::UNAUTHORIZED, "wrong token");
        }
        let path = req.uri().path();
        let to = if rest.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{rest}")
        };
        return Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(header::LOCATION, to)
            .header(header::SET_COOKIE, guard.set_cookie())
            .body(Body::empty())
            .unwrap_or_default();
    }
    if !guard.cookie_ok(req.headers()) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "open the address `enroll console` printed (it carries the token)",
        );
    }
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    if req.method() != Method::POST {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "GET or POST only");
    }
    if !guard.origin_ok(req.headers()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "a change must come from this console's own page",
        );
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_FORM).await else {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "form too large");
    };
    if !form_csrf(&bytes).is_some_and(|c| guard.csrf_ok(&c)) {
        return refuse(
            StatusCode::FORBIDDEN,
            "the form's CSRF value is missing or wrong: reload the page and try again",
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn secrets_are_random_and_long() {
        let a = Guard::new(1);
        let b = Guard::new(1);
        assert_eq!(a.token.len(), 64);
        assert_ne!(a.token, b.token);
        assert_ne!(a.token, a.session);
        assert_ne!(a.session, a.csrf);
        assert!(a.url().starts_with("http://127.0.0.1:1/?token="));
    }

    #[test]
    fn token_and_csrf_need_the_exact_value() {
        let g = Guard::new(4000);
        let t = g.token.clone();
        assert!(g.token_ok(&t));
        assert!(!g.token_ok(&t[..63]));
        assert!(!g.token_ok(""));
        assert!(!g.token_ok(&t.to_uppercase()));
        let c = g.csrf.clone();
        assert!(g.csrf_ok(&c));
        assert!(!g.csrf_ok(&t));
    }

    #[test]
    fn the_cookie_opens_the_session_and_nothing_else_does() {
        let g = Guard::new(4000);
        let set = g.set_cookie();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        let pair = set.split(';').next().unwrap();
        assert!(g.cookie_ok(&headers(&[(header::COOKIE, &format!("a=b; {pair}"))])));
        let wrong = format!("{COOKIE}={}", g.token);
        assert!(!g.cookie_ok(&headers(&[(header::COOKIE, &wrong)])));
        assert!(!g.cookie_ok(&HeaderMap::new()));
    }

    #[test]
    fn origin_then_referer_must_be_this_console() {
        let g = Guard::new(4000);
        let ok = "http://127.0.0.1:4000";
        assert!(g.origin_ok(&headers(&[(header::ORIGIN, ok)])));
        assert!(!g.origin_ok(&headers(&[(header::ORIGIN, "http://127.0.0.1:4001")])));
        assert!(!g.origin_ok(&headers(&[(header::ORIGIN, "null")])));
        assert!(!g.origin_ok(&headers(&[(header::ORIGIN, "http://evil.example")])));
        // A foreign Origin is not rescued by a matching Referer.
        assert!(!g.origin_ok(&headers(&[
            (header::ORIGIN, "http://evil.example"),
            (header::REFERER, "http://127.0.0.1:4000/dead-letters"),
        ])));
        assert!(g.origin_ok(&headers(&[(header::REFERER, "http://127.0.0.1:4000/x?y")])));
        assert!(!g.origin_ok(&headers(&[(header::REFERER, "http://127.0.0.1:40001/")])));
        assert!(!g.origin_ok(&HeaderMap::new()), "neither header: refused");
    }

    #[test]
    fn host_must_be_the_bound_address() {
        let g = Guard::new(4000);
        assert!(g.host_ok(&headers(&[(header::HOST, "127.0.0.1:4000")])));
        assert!(!g.host_ok(&headers(&[(header::HOST, "evil.example:4000")])));
        assert!(!g.host_ok(&HeaderMap::new()));
    }

    #[test]
    fn the_token_is_taken_out_of_the_query() {
        let (t, rest) = split_token("q=ada%40example.com&token=abc");
        assert_eq!(t.as_deref(), Some("abc"));
        assert_eq!(rest, "q=ada%40example.com");
        assert_eq!(split_token(""), (None, String::new()));
        assert_eq!(form_csrf(b"a=1&csrf=x%2By").as_deref(), Some("x+y"));
        assert_eq!(form_csrf(b"a=1"), None);
    }
}
