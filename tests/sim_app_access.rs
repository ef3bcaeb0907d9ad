//! App-only access blocked for one mailbox (issue 16, "Simulator"): when an
//! Exchange Online policy (RBAC for Applications, or an application access
//! policy) leaves a mailbox out of an app's reach, Graph answers the app
//! 403 `ErrorAccessDenied` "Access to OData is disabled." (graph-facts.md
//! "Errors"; learn.microsoft.com/graph/auth-limit-mailbox-access). The
//! simulator does so per mailbox through `POST /_sim/mail/app_access`, and
//! graphgate's Graph client turns it into advice naming the admin commands.

use std::sync::Arc;

use graphgate::auth::{
    AuthorityConfig, ClientCredential, ClientCredentialsTokenSource, EntraClient,
};
use graphgate::graph::{GraphClient, GraphConfig, Mailbox};
use graphgate::secret::Secret;
use graphgate::sim::tenant::{DEMO_CLIENT_SECRET, DEMO_CONFIDENTIAL_CLIENT_ID, DEMO_TENANT_ID};

mod support;

async fn app_access(sim: &support::Sim, upn: &str, blocked: bool) {
    sim.control(
        reqwest::Method::POST,
        &format!("/_sim/mail/app_access?to={upn}&blocked={blocked}"),
        None,
    )
    .await;
}

#[tokio::test]
async fn a_blocked_mailbox_refuses_app_only_access_with_odata_disabled_and_a_remedy() {
    let sim = support::sim(true);
    let entra = EntraClient::new(AuthorityConfig {
        authority_url: sim.url.clone(),
        tenant: DEMO_TENANT_ID.into(),
        client_id: DEMO_CONFIDENTIAL_CLIENT_ID.into(),
        credential: ClientCredential::Secret {
            secret: Secret::new(DEMO_CLIENT_SECRET.into()),
        },
        graph_resource: "https://graph.microsoft.com".into(),
    })
    .unwrap();
    let tokens = Arc::new(ClientCredentialsTokenSource::new(Arc::new(entra)));
    let client = GraphClient::new(GraphConfig {
        base_url: sim.url.clone(),
        ..GraphConfig::default()
    })
    .unwrap();
    let alice = client.mailbox(Mailbox::User("alice@example.com".into()), tokens.clone());
    let bob = client.mailbox(Mailbox::User("bob@example.com".into()), tokens);
    assert!(!alice.list_folders().await.unwrap().is_empty());

    app_access(&sim, "alice@example.com", true).await;
    let err = alice.list_folders().await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("ErrorAccessDenied"), "{text}");
    assert!(text.contains("Access to OData is disabled."), "{text}");
    let remedy = err.remedy();
    assert!(
        remedy.contains("Test-ServicePrincipalAuthorization")
            && remedy.contains("Test-ApplicationAccessPolicy"),
        "{remedy}"
    );
    // Another mailbox, and a delegated sign-in to the blocked one, work.
    assert!(!bob.list_folders().await.unwrap().is_empty());
    let delegated = support::token(&sim.url, "alice@example.com").await;
    let r = reqwest::Client::new()
        .get(format!("{}/v1.0/me/mailFolders", sim.url))
        .bearer_auth(delegated)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    app_access(&sim, "alice@example.com", false).await;
    assert!(!alice.list_folders().await.unwrap().is_empty());
}
