//! Account pages: add, edit (aliases, shared mailboxes, IMAP inbox folder,
//! keep-fetched, Sent Items copy, sender policy), remove — through
//! [`crate::gateway::ops::accounts`], as `graphgate accounts` does — and
//! the sign-in panel ("Sign in with Microsoft", device code, admin
//! consent).

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::access::{self, Admin};
use super::pages::{csrf, page, urlencode};
use super::{Console, lock};
use crate::config::SenderPolicy;
use crate::gateway::ops::accounts::{self as ops, ListEdits, NewAccountRequest, Settings};
use crate::secret::Secret;
use crate::store::{Account, AccountState, AppCredential, AuthProfile};

type Form = axum::Form<HashMap<String, String>>;

fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> &'a str {
    form.get(name).map(|s| s.trim()).unwrap_or("")
}

/// Addresses typed one per line (or separated by commas or spaces).
fn addresses(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn account_url(login: &str) -> String {
    format!("/accounts/{}", urlencode(login))
}

/// What an app-only account's credential is, and when it expires when
/// that can be known here (a certificate's notAfter; a client secret's
/// expiry is only in the Entra admin center).
pub(super) fn credential_expiry(console: &Console, account: &Account) -> String {
    let m = &console.inner.config.microsoft;
    let own = account.app_credential.clone().unwrap_or_default();
    let cert_file = own
        .certificate_file
        .clone()
        .or_else(|| m.certificate_file.clone());
    if let Some(path) = cert_file {
        let pem = std::fs::read(&path).unwrap_or_default();
        let expiry = x509_parser::pem::parse_x509_pem(&pem)
            .ok()
            .and_then(|(_, p)| {
                p.parse_x509()
                    .ok()
                    .map(|c| c.validity().not_after.timestamp())
            });
        return match expiry {
            Some(t) => {
                let left = t - crate::store::now_unix();
                if left > 0 {
                    format!(
                        "certificate {} expires in {}",
                        path.display(),
                        crate::gateway::ops::queue::age(left)
                    )
                } else {
                    format!(
                        "certificate {} EXPIRED; upload a new one to the app registration",
                        path.display()
                    )
                }
            }
            None => format!("certificate {} does not parse", path.display()),
        };
    }
    "client secret: its expiry shows in the Entra admin center (App registrations → \
     Certificates & secrets); graphgate says AADSTS7000222 once it has expired"
        .to_string()
}

pub(super) async fn new_page(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let admin = match access::viewer(&console, &headers, peer) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let body = html! {
        form method="post" action="/accounts" {
            (csrf(&admin))
            p { label { "Local login (what the application types) " input name="login" required; } }
            p { label { "Local password " input type="password" name="password" autocomplete="new-password" required; } }
            p { label { "Microsoft 365 mailbox (default: the login) " input type="email" name="mailbox"; } }
            p { label { "Sign-in " select name="auth" {
                option value="delegated" selected { "delegated: a user signs in (Sign in with Microsoft)" }
                option value="app-only" { "app-only: the app's own credential (client credentials)" }
            } } }
            p { label { "From aliases (one per line) " textarea name="aliases" rows="2" {} } }
            p { label { "Shared mailboxes (one per line) " textarea name="shared" rows="2" {} } }
            p { button type="submit" { "Add account" } }
        }
    };
    page("Add an account", &admin, None, body).into_response()
}

pub(super) async fn add(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::Form(form): Form,
) -> Response {
    let admin = match access::poster(&console, &headers, peer, &form) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let login = field(&form, "login").to_string();
    let mailbox = Some(field(&form, "mailbox"))
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    let request = NewAccountRequest {
        login: login.clone(),
        mailbox,
        password: Secret::new(form.get("password").cloned().unwrap_or_default()),
        app_only: field(&form, "auth") == "app-only",
        aliases: addresses(field(&form, "aliases")),
        shared: addresses(field(&form, "shared")),
        sent_copy: true,
        credential: AppCredential::default(),
        settings: Settings::default(),
    };
    match ops::add(&console.inner.store, request) {
        Ok(account) => {
            let next = if account.auth_profile == AuthProfile::Delegated {
                " Next: Sign in with Microsoft below."
            } else {
                ""
            };
            console.flash(
                &admin.id,
                format!("Added {} → {}.{next}", account.login, account.mailbox),
            );
            Redirect::to(&account_url(&account.login)).into_response()
        }
        Err(e) => {
            console.flash(&admin.id, format!("Nothing was added: {e}"));
            Redirect::to("/accounts/new").into_response()
        }
    }
}

async fn account_body(
    console: &Console,
    admin: &Admin,
    login: &str,
) -> Result<Markup, Box<Response>> {
    let store = &console.inner.store;
    let Some(account) = store.account(login).ok().flatten() else {
        return Err(Box::new(
            (
            StatusCode::NOT_FOUND,
            page(
                "No such account",
                admin,
                None,
                html! { p { "There is no local account " (login) ". " a href="/accounts/new" { "Add it" } "." } },
            ),
        )
            .into_response(),
        ));
    };
    let policy = ops::sender_policy(store, &account.login).unwrap_or(SenderPolicy::Keep);
    let action = |verb: &str| format!("{}/{verb}", account_url(&account.login));
    let signin = super::signin::panel(console, admin, &account);
    Ok(html! {
        p {
            @if account.state == AccountState::Online { span.state.online { "ONLINE" } }
            @else { span.state.offline { "NEEDS SIGN-IN" } }
            " " (account.mailbox)
        }
        @if let Some(error) = &account.last_error { p.problem { (error) } }
        (signin)
        section {
            h2 { "Settings" }
            form method="post" action=(action("settings")) {
                (csrf(admin))
                p { label { "From aliases (one per line) "
                    textarea name="aliases" rows="3" { (account.aliases.join("\n")) } } }
                p { label { "Shared mailboxes (one per line) "
                    textarea name="shared" rows="3" { (account.shared_mailboxes.join("\n")) } } }
                p { label { "IMAP INBOX is the folder (empty: the mailbox's Inbox) "
                    input name="imap_inbox" value=(account.imap_inbox.clone().unwrap_or_default()); } }
                p { label { "Fetched mail " select name="keep_fetched" {
                    option value="yes" selected[account.keep_fetched] { "stays on the server" }
                    option value="no" selected[!account.keep_fetched] { "is deleted when the IMAP session closes the folder" }
                } } }
                p { label { "Sent Items copy of SMTP submissions " select name="sent_copy" {
                    option value="yes" selected[account.save_to_sent_items] { "yes" }
                    option value="no" selected[!account.save_to_sent_items] { "no" }
                } } }
                p { label { "Sender policy " select name="sender_policy" {
                    @for (value, words) in [
                        (SenderPolicy::Keep, "keep: the mailbox or an alias, else refused (550)"),
                        (SenderPolicy::Rewrite, "rewrite: any sender, sent as the mailbox"),
                        (SenderPolicy::Reject, "reject: the mailbox only"),
                    ] {
                        option value=(value.as_str()) selected[policy == value] { (words) }
                    }
                } } }
                p { button type="submit" { "Save settings" } }
            }
        }
        section {
            h2 { "Remove" }
            form method="post" action=(action("remove")) {
                (csrf(admin))
                p { label { input type="checkbox" name="confirm" value="yes" required;
                    " Yes, remove " (account.login) " and its tokens (refused while it has mail in the spool)" } }
                p { button.danger type="submit" { "Remove account" } }
            }
        }
    })
}

pub(super) async fn page_route(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(login): Path<String>,
    headers: HeaderMap,
) -> Response {
    let admin = match access::viewer(&console, &headers, peer) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let pending = lock(&console.inner.devices).contains_key(&login.to_lowercase());
    match account_body(&console, &admin, &login).await {
        Ok(body) => page(&login, &admin, pending.then_some(5), body).into_response(),
        Err(r) => *r,
    }
}

fn yes(form: &HashMap<String, String>, name: &str) -> Option<bool> {
    match field(form, name) {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

fn differ(old: &[String], new: &[String]) -> (Vec<String>, Vec<String>) {
    let has = |l: &[String], a: &String| l.iter().any(|x| x.eq_ignore_ascii_case(a));
    let add = new.iter().filter(|a| !has(old, a)).cloned().collect();
    let remove = old.iter().filter(|a| !has(new, a)).cloned().collect();
    (add, remove)
}

pub(super) async fn edit(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(login): Path<String>,
    headers: HeaderMap,
    axum::Form(form): Form,
) -> Response {
    let admin = match access::poster(&console, &headers, peer, &form) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let store = &console.inner.store;
    let Some(account) = store.account(&login).ok().flatten() else {
        console.flash(&admin.id, format!("There is no local account {login}."));
        return Redirect::to("/").into_response();
    };
    let (add_aliases, remove_aliases) =
        differ(&account.aliases, &addresses(field(&form, "aliases")));
    let (add_shared, remove_shared) = differ(
        &account.shared_mailboxes,
        &addresses(field(&form, "shared")),
    );
    let edits = ListEdits {
        add_aliases,
        remove_aliases,
        add_shared,
        remove_shared,
    };
    let inbox = field(&form, "imap_inbox");
    let current_inbox = account.imap_inbox.clone().unwrap_or_default();
    let policy = field(&form, "sender_policy").parse::<SenderPolicy>().ok();
    let current_policy = ops::sender_policy(store, &account.login).ok();
    let settings = Settings {
        imap_inbox: (inbox != current_inbox).then(|| inbox.to_string()),
        keep_fetched: yes(&form, "keep_fetched").filter(|k| *k != account.keep_fetched),
        sent_copy: yes(&form, "sent_copy").filter(|k| *k != account.save_to_sent_items),
        sender_policy: policy.filter(|p| Some(*p) != current_policy),
    };
    let result = ops::apply_lists(store, &account.login, &edits).and_then(|mut said| {
        said.extend(ops::apply_settings(store, &account.login, &settings)?);
        Ok(said)
    });
    match result {
        Ok(said) if said.is_empty() => console.flash(&admin.id, "Nothing changed."),
        Ok(said) => {
            for line in said {
                console.flash(&admin.id, format!("{}: {line}.", account.login));
            }
            console.flash(
                &admin.id,
                "The gateway applies it to the next SMTP AUTH and IMAP login (no new sign-in \
                 needed).",
            );
        }
        Err(e) => console.flash(&admin.id, format!("Not saved: {e}")),
    }
    Redirect::to(&account_url(&account.login)).into_response()
}

pub(super) async fn remove(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(login): Path<String>,
    headers: HeaderMap,
    axum::Form(form): Form,
) -> Response {
    let admin = match access::poster(&console, &headers, peer, &form) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    if field(&form, "confirm") != "yes" {
        console.flash(
            &admin.id,
            "Not removed: tick the confirmation box to remove the account.",
        );
        return Redirect::to(&account_url(&login)).into_response();
    }
    match ops::remove(&console.inner.store, &login) {
        Ok(()) => {
            console.flash(&admin.id, format!("Removed {login}."));
            Redirect::to("/").into_response()
        }
        Err(e) => {
            console.flash(&admin.id, format!("Not removed: {e}"));
            Redirect::to(&account_url(&login)).into_response()
        }
    }
}
