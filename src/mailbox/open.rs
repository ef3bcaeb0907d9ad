//! Opening a signed-in account's mailboxes, for the protocol servers: the
//! password check (through the login guard) and the mailbox set of the
//! account (its own mailbox and the shared ones it reads, with its INBOX
//! placement). The servers never see the store or the Graph client.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{InboxPlacement, MailboxModel, MailboxSet, SHARED_PREFIX};
use crate::backend::MailBackend;
use crate::login_guard::{Checked, LoginGuard};
use crate::runtime::Accounts;
use crate::secret::Secret;

/// A local account, as the servers know it after LOGIN.
pub use crate::store::Account;

/// Why `account` cannot open its mailbox without a new sign-in (signed
/// out, or its grant known dead: OFFLINE with the reason), if so. Front
/// ends answer with the fix instead of a token request per connection.
pub fn signed_out_reason(account: &Account) -> Option<&str> {
    match account.state {
        crate::store::AccountState::Offline => account.last_error.as_deref(),
        _ => None,
    }
}

/// Check a login's password (with the guard's failed-login backoff).
pub async fn check_login(
    accounts: &Accounts,
    guard: &LoginGuard,
    protocol: &'static str,
    ip: IpAddr,
    login: &str,
    password: Secret<String>,
) -> Checked {
    guard
        .check(accounts.store(), protocol, ip, login, password)
        .await
}

/// The mailbox set behind a successful login.
pub fn open_account(
    accounts: &Accounts,
    account: &Account,
    folder_freshness: Duration,
) -> Result<MailboxSet, String> {
    {
        let runtime = accounts.get(account.id)?;
        let backend: Arc<dyn MailBackend> = Arc::new(runtime.mailbox.clone());
        // The per-account INBOX (`accounts set --imap-inbox`): a folder of
        // the account's own mailbox, or of one of its shared mailboxes.
        let inbox = account
            .imap_inbox
            .as_deref()
            .map(|name| name.trim_end_matches('/'))
            .filter(|name| !name.is_empty() && !name.eq_ignore_ascii_case("INBOX"));
        let placement = |prefix: &str| -> InboxPlacement {
            match inbox {
                None => InboxPlacement::Own,
                Some(name) => {
                    let shared_target = account.shared_mailboxes.iter().find_map(|a| {
                        let p = format!("{SHARED_PREFIX}{a}/");
                        name.get(..p.len())
                            .filter(|head| head.eq_ignore_ascii_case(&p))
                            .map(|_| p)
                    });
                    match shared_target {
                        Some(p) if p.eq_ignore_ascii_case(prefix) => {
                            InboxPlacement::Folder(name[p.len()..].to_string())
                        }
                        Some(_) => InboxPlacement::Elsewhere,
                        None if prefix.is_empty() => InboxPlacement::Folder(name.to_string()),
                        None => InboxPlacement::Own,
                    }
                }
            }
        };
        let own = MailboxModel::new(
            accounts.store().clone(),
            account.id,
            account.mailbox.clone(),
            backend,
        )
        .with_inbox(placement(""))
        .with_folder_freshness(folder_freshness);
        let shared = account
            .shared_mailboxes
            .iter()
            .map(|address| {
                let backend: Arc<dyn MailBackend> = Arc::new(accounts.graph().mailbox(
                    crate::graph::Mailbox::User(address.clone()),
                    runtime.tokens.clone(),
                ));
                let prefix = format!("{SHARED_PREFIX}{address}/");
                MailboxModel::new(
                    accounts.store().clone(),
                    account.id,
                    address.clone(),
                    backend,
                )
                .with_inbox(placement(&prefix))
                .with_prefix(prefix)
                .with_folder_freshness(folder_freshness)
            })
            .collect();
        Ok(MailboxSet::new(own, shared))
    }
}
