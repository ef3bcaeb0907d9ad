//! The library's Graph client end to end against the embedded simulator:
//! app-only sign-in with a certificate (a JWT client assertion), then list
//! Alice's folders, send Bob a message as raw MIME, read Bob's Inbox, and
//! show how many Graph requests that cost.
//!
//! `cargo run --example graph_roundtrip`
//!
//! Against Microsoft, only the two base URLs, the tenant, the client id and
//! the certificate change.

use std::sync::Arc;

use graphgate::auth::{
    AssertionAlgorithm, AuthorityConfig, ClientCredential, ClientCredentialsTokenSource,
    EntraClient,
};
use graphgate::graph::{GraphClient, GraphConfig, Mailbox, WellKnownFolder};
use graphgate::secret::Secret;
use graphgate::sim::{SimConfig, SimState, tenant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let sim = SimState::new(SimConfig {
        public_url: url.clone(),
        ..SimConfig::default()
    })?;
    tokio::spawn(graphgate::sim::serve(
        listener,
        sim.clone(),
        std::future::pending(),
    ));

    let entra = Arc::new(EntraClient::new(AuthorityConfig {
        authority_url: url.clone(),
        tenant: tenant::DEMO_TENANT_ID.into(),
        client_id: tenant::DEMO_CONFIDENTIAL_CLIENT_ID.into(),
        credential: ClientCredential::Certificate {
            cert_pem: sim.certificate().cert_pem.clone(),
            key_pem: Secret::new(sim.certificate().key_pem.clone()),
            algorithm: AssertionAlgorithm::PS256,
        },
        graph_resource: "https://graph.microsoft.com".into(),
    })?);
    let tokens = Arc::new(ClientCredentialsTokenSource::new(entra));
    let graph = GraphClient::new(GraphConfig {
        base_url: url.clone(),
        ..GraphConfig::default()
    })?;
    let alice = graph.mailbox(Mailbox::User("alice@example.com".into()), tokens.clone());
    let bob = graph.mailbox(Mailbox::User("bob@example.com".into()), tokens);

    for folder in alice.list_folders().await? {
        println!(
            "alice: {:<24} {:>3} unread / {:>3} total",
            folder.display_name, folder.unread, folder.total
        );
    }
    let mime = "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: Hello from graph_roundtrip\r\n\r\nHi Bob!\r\n";
    alice
        .send_mime(mime.as_bytes().to_vec().into(), true)
        .await?;
    let inbox = bob.list_messages(&WellKnownFolder::Inbox.id()).await?;
    for m in &inbox {
        println!("bob's inbox: {:?}", m.subject.as_deref().unwrap_or(""));
    }
    let counters = graph.counters();
    println!(
        "Graph requests made by the client: {}",
        counters.total_requests()
    );
    let stats = reqwest::get(format!("{url}/_sim/stats"))
        .await?
        .text()
        .await?;
    println!("simulator's count: {stats}");
    Ok(())
}
