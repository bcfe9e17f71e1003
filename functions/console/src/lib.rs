//! `enroll console`: the seller's pages over what the operator commands already do. Buyers and
//! their access, one buyer's grants, Groups and history (with link and merge), the dead-letter
//! queues (replay after a dry-run preview and a confirmation), the audit (its fix behind the
//! same mass-removal guard as `enroll audit --fix`), the catalog, activity per day, and the
//! setup check of `enroll doctor`.
//!
//! The pages are server-rendered HTML that works without JavaScript; the one stylesheet is
//! compiled into the binary. The console reads and acts only through a [`Source`], which the
//! CLI builds from the target every operator command resolves (a running `enroll dev`, its data
//! directory, or a deployed stack): the console has no second implementation of a listing, a
//! replay, the audit or the guard. How a request gets in is [`security`].

pub mod html;
mod pages;
pub mod security;

use async_trait::async_trait;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use enroll_core::config::Config;
use enroll_core::dead_letters::{ParkedMessage, ReplayReport, ReplayRequest};
use enroll_embedded::status::StatusReport;
use enroll_ops::doctor::Report;
use enroll_ops::workspace::{Ledger, Workspace};
use provision::link::LinkReport;
use security::Guard;
use std::net::SocketAddr;
use std::sync::Arc;

/// Where the console's data comes from and where its actions go. The CLI implements it over
/// the target every operator command resolves; each method does what the matching command
/// does there.
#[async_trait]
pub trait Source: Send + Sync + 'static {
    /// One line saying where the data comes from, e.g. "enroll dev at http://127.0.0.1:8788".
    fn describe(&self) -> String;
    /// The configuration (the catalog, the settings the setup check reads).
    async fn config(&self) -> anyhow::Result<Config>;
    /// The ledger and buyers' histories, read as they are now.
    async fn ledger(&self) -> anyhow::Result<Ledger>;
    /// What `enroll status <query>` reports.
    async fn status(&self, query: &str) -> anyhow::Result<StatusReport>;
    /// What `enroll dlq list` lists, both stages.
    async fn dead_letters(&self) -> anyhow::Result<Vec<ParkedMessage>>;
    /// What `enroll dlq replay` does (a rehearsal when `req.dry_run`).
    async fn replay(&self, req: &ReplayRequest) -> anyhow::Result<Vec<ReplayReport>>;
    /// What `enroll link alias existing [--merge]` does.
    async fn link(&self, alias: &str, existing: &str, merge: bool) -> anyhow::Result<LinkReport>;
    /// The workspace `enroll audit` works on; `writes` for a fix.
    async fn workspace(&self, writes: bool) -> anyhow::Result<Workspace>;
    /// What `enroll doctor` reports; `None` when the setup check is not available here.
    async fn doctor(&self) -> anyhow::Result<Option<Report>>;
}

/// What every handler reaches.
pub struct App {
    pub source: Arc<dyn Source>,
    pub guard: Arc<Guard>,
    /// One action at a time: two fixes or replays racing on one queue help no one.
    pub acting: tokio::sync::Mutex<()>,
}

const CSS: &str = include_str!("../assets/console.css");

/// The console's routes, behind the gate.
pub fn router(app: Arc<App>) -> Router {
    let guard = app.guard.clone();
    Router::new()
        .route("/", get(pages::buyers::list))
        .route("/buyer", get(pages::buyers::one))
        .route("/buyer/link", post(pages::buyers::link))
        .route("/dead-letters", get(pages::dlq::list))
        .route("/dead-letters/preview", post(pages::dlq::preview))
        .route("/dead-letters/replay", post(pages::dlq::replay))
        .route("/audit", get(pages::audit::show))
        .route("/audit/fix", post(pages::audit::fix))
        .route("/catalog", get(pages::catalog::show))
        .route("/activity", get(pages::activity::show))
        .route("/setup", get(pages::setup::show))
        .route("/assets/console.css", get(css))
        .fallback(pages::not_found)
        .with_state(app)
        .layer(axum::middleware::from_fn_with_state(guard, security::gate))
}

async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

/// A console bound to 127.0.0.1.
pub struct Console {
    pub addr: SocketAddr,
    pub guard: Arc<Guard>,
    listener: tokio::net::TcpListener,
    app: Arc<App>,
}

impl Console {
    /// Binds 127.0.0.1:`port` (0 for any free port) and makes the process's secrets.
    pub async fn bind(source: Arc<dyn Source>, port: u16) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let guard = Arc::new(Guard::new(addr.port()));
        let app = Arc::new(App {
            source,
            guard: guard.clone(),
            acting: tokio::sync::Mutex::new(()),
        });
        Ok(Self {
            addr,
            guard,
            listener,
            app,
        })
    }

    /// The address with the token, as `enroll console` prints it.
    pub fn url(&self) -> String {
        self.guard.url()
    }

    /// Serves until `stop` resolves.
    pub async fn serve(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, router(self.app))
            .with_graceful_shutdown(stop)
            .await?;
        Ok(())
    }
}
