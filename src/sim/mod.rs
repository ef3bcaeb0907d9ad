//! A simulator of Microsoft Graph mail and Entra ID (identity platform v2).
//!
//! A real HTTP server (axum) that answers the same paths, JSON shapes,
//! status codes and headers as Microsoft, backed by an in-memory tenant. It is
//! the embedded default of `graphgate demo` and what every test and benchmark
//! runs against. The gateway's `graph/` and `auth/` code talks to it over HTTP
//! exactly as it talks to Microsoft; this module shares no code with them
//! (no JSON types, constants or helpers), so that a misunderstanding of the
//! wire protocol on one side is caught by the other.
//!
//! Layout:
//! - [`tenant`] — users, shared mailboxes and app registrations (the directory).
//! - [`entra`] — `/{tenant}/oauth2/v2.0/{devicecode,token,authorize}`,
//!   `/{tenant}/adminconsent`; issues and validates access tokens.
//! - [`mail`] — `/v1.0/me/…`, `/v1.0/users/{id|upn}/…` mail folders, messages,
//!   delta, `$value`, sendMail, drafts, attachments, upload sessions, `$batch`.
//! - [`batch`] — `POST /v1.0/$batch` (and `/beta/$batch`).
//! - [`layer`], [`faults`], [`stats`] — per-request counting, fault
//!   injection and Microsoft's per-mailbox limits.
//! - [`control`] — `/_sim/stats`, `/_sim/faults`, `/_sim/devicelogin` and
//!   other test controls.
//! - [`caller`], [`errors`] — the token → identity extractor and Microsoft's
//!   error shapes.

pub mod caller;
pub mod errors;
pub mod tenant;

pub mod batch;
pub mod control;
pub mod entra;
pub mod faults;
pub mod layer;
pub mod mail;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

pub use tenant::{DemoCertificate, Tenant};

/// Start-up settings of the simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The URL clients reach the simulator at (e.g. `http://127.0.0.1:8787`),
    /// used in `verification_uri`, upload URLs and `@odata` links.
    pub public_url: String,
    /// Lifetime of issued access tokens (Entra: about 3599 s).
    pub access_token_lifetime: Duration,
    /// Lifetime of a device code (Entra: 900 s).
    pub device_code_lifetime: Duration,
    /// The `interval` a device-code client must wait between polls (Entra:
    /// 5 s); polling sooner answers `slow_down`. Tests set it low.
    pub device_code_interval: Duration,
    /// Approve device-code sign-ins by themselves after this delay, as the
    /// given user (UPN) (the demo uses this).
    pub device_auto_approve: Option<(Duration, String)>,
    /// Lifetime of an authorization code (Entra: about 10 minutes).
    pub authorization_code_lifetime: Duration,
    /// Concurrent requests allowed per mailbox (Graph: 4).
    pub mailbox_concurrency: usize,
    /// Seed the demo mailboxes with realistic messages.
    pub seed_messages: bool,
    /// Faults in force from start-up (`/_sim/faults` changes them later).
    pub initial_faults: faults::Faults,
    /// Seed of the fault RNG (`None`: from the OS), for reproducible tests.
    pub fault_seed: Option<u64>,
    /// Requests allowed per mailbox per 10 minutes (Graph: 10,000); `None`
    /// for no budget.
    pub mailbox_budget: Option<u32>,
    /// Store every message the simulator makes (deliveries, Sent Items
    /// copies, drafts, items created from JSON, copies) in the MIME
    /// Exchange Online generates instead of the bytes submitted, so that
    /// `$value` differs from them as it does at Microsoft (see
    /// [`mail::exchange`]; "Outlook does not save messages in MIME
    /// format", Graph's "Get MIME content of a message"). On by default,
    /// as Microsoft behaves; off (`--exact-mime`) only for a test that
    /// needs the submitted bytes back.
    pub exchange_mime: bool,
    /// The Graph resource of the cloud simulated: scopes are prefixed with
    /// it and access tokens name it as `aud`. `https://graph.microsoft.com`
    /// (global); `https://graph.microsoft.us`, `https://dod-graph.microsoft.us`
    /// or `https://microsoftgraph.chinacloudapi.cn` for a national cloud,
    /// whose Entra refuses the others' scopes (AADSTS500011).
    pub graph_resource: String,
    /// Largest MIME message (decoded bytes) a MIME `sendMail` or a message
    /// created from MIME takes; larger ones get 413, as the about-4-MB
    /// request limit does. Microsoft's threshold for MIME is not
    /// documented: its docs say 4 MB per request (4 MB of base64 is 3 MB
    /// of MIME), a user saw MIME above 2240 KB refused
    /// (microsoftgraph/microsoft-graph-docs#13979). The default is the
    /// riskier, reported one: 2,240,000 bytes.
    pub mime_request_limit: usize,
    /// The status of a MailboxConcurrency refusal ("Application is over
    /// its MailboxConcurrency limit.", code `ApplicationThrottled`, with
    /// `Retry-After`). Microsoft's throttling guidance shows 429; whether
    /// Exchange answers some of them 503 is unverified (graph-facts.md,
    /// "Unverified": "MailboxConcurrency reported as 429 (usual) or 503").
    /// The default is the riskier 503: a client that resends only 429s,
    /// or only idempotent 503s, loses a POST that was never carried out.
    pub concurrency_refusal_status: u16,
}

/// [`SimConfig::mime_request_limit`] by default: the reported 2240 KB.
pub const REPORTED_MIME_LIMIT: usize = 2_240_000;

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            public_url: "http://127.0.0.1:8787".into(),
            access_token_lifetime: Duration::from_secs(3599),
            device_code_lifetime: Duration::from_secs(900),
            device_code_interval: Duration::from_secs(5),
            device_auto_approve: None,
            authorization_code_lifetime: Duration::from_secs(600),
            mailbox_concurrency: 4,
            seed_messages: true,
            initial_faults: faults::Faults::default(),
            fault_seed: None,
            mailbox_budget: None,
            exchange_mime: true,
            graph_resource: "https://graph.microsoft.com".into(),
            mime_request_limit: REPORTED_MIME_LIMIT,
            concurrency_refusal_status: 503,
        }
    }
}

/// Shared state of one simulator instance.
#[derive(Clone)]
pub struct SimState {
    inner: Arc<SimInner>,
}

struct SimInner {
    config: SimConfig,
    tenant: Tenant,
    certificate: DemoCertificate,
    entra: entra::EntraState,
    mail: mail::MailState,
    faults: faults::FaultState,
    stats: stats::Stats,
    limits: layer::MailboxLimits,
}

impl SimState {
    pub fn new(config: SimConfig) -> anyhow::Result<SimState> {
        let certificate = DemoCertificate::generate()?;
        let tenant = Tenant::demo(&certificate);
        let entra = entra::EntraState::new(&config);
        let mail = mail::MailState::new(&tenant, config.seed_messages);
        let faults = faults::FaultState::new(config.initial_faults.clone(), config.fault_seed);
        let limits = layer::MailboxLimits::new(config.mailbox_concurrency, config.mailbox_budget);
        Ok(SimState {
            inner: Arc::new(SimInner {
                config,
                tenant,
                certificate,
                entra,
                mail,
                faults,
                stats: stats::Stats::default(),
                limits,
            }),
        })
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    pub fn tenant(&self) -> &Tenant {
        &self.inner.tenant
    }

    /// The demo confidential app's certificate and private key.
    pub fn certificate(&self) -> &DemoCertificate {
        &self.inner.certificate
    }

    pub fn entra(&self) -> &entra::EntraState {
        &self.inner.entra
    }

    pub fn mail(&self) -> &mail::MailState {
        &self.inner.mail
    }

    pub fn faults(&self) -> &faults::FaultState {
        &self.inner.faults
    }

    pub fn stats(&self) -> &stats::Stats {
        &self.inner.stats
    }

    pub(crate) fn limits(&self) -> &layer::MailboxLimits {
        &self.inner.limits
    }
}

/// Marks a request as an inner request of a `$batch` (an extension set by
/// the batch handler before it dispatches the request to [`graph_service`]).
#[derive(Debug, Clone, Copy)]
pub struct InnerRequest;

/// The Graph routes with their per-request layers (counting, faults,
/// limits). The top-level router serves it; `$batch` dispatches its inner
/// requests to it too.
pub fn graph_service(state: SimState) -> Router {
    mail::routes()
        .fallback(layer::unmatched)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            layer::graph_layer,
        ))
        .with_state(state)
}

/// The whole simulator as one axum router.
pub fn router(state: SimState) -> Router {
    Router::new()
        .merge(control::routes().with_state(state.clone()))
        .merge(mail::control_routes().with_state(state.clone()))
        .merge(
            entra::routes()
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    layer::entra_layer,
                ))
                .with_state(state.clone()),
        )
        .merge(
            batch::routes()
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    layer::graph_layer,
                ))
                .with_state(state.clone()),
        )
        .merge(graph_service(state))
}

/// Serve the simulator on an already-bound listener until `shutdown`
/// resolves.
pub async fn serve(
    listener: TcpListener,
    state: SimState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
