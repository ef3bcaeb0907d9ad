//! Local accounts for an admin: add, edit settings and address lists,
//! remove (`graphgate accounts`, the console's account pages). Each edit
//! returns what changed, in words, for the front end to show.

use super::OpsError;
use crate::config::SenderPolicy;
use crate::secret::Secret;
use crate::store::{Account, AppCredential, AuthProfile, NewAccount, Store};

/// Settings of an account that change without a new sign-in; `None`
/// leaves one as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// The folder IMAP shows as INBOX (empty or `INBOX`: the mailbox's own).
    pub imap_inbox: Option<String>,
    pub keep_fetched: Option<bool>,
    pub sent_copy: Option<bool>,
    pub sender_policy: Option<SenderPolicy>,
}

/// Additions and removals of an account's From aliases and shared
/// mailboxes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListEdits {
    pub add_aliases: Vec<String>,
    pub remove_aliases: Vec<String>,
    pub add_shared: Vec<String>,
    pub remove_shared: Vec<String>,
}

/// A new account.
#[derive(Debug)]
pub struct NewAccountRequest {
    pub login: String,
    /// Default: the login.
    pub mailbox: Option<String>,
    pub password: Secret<String>,
    pub app_only: bool,
    pub aliases: Vec<String>,
    pub shared: Vec<String>,
    pub sent_copy: bool,
    /// An app-only account's own app registration (default: none).
    pub credential: AppCredential,
    pub settings: Settings,
}

/// A mail address such as alice@contoso.com, or a refusal naming `what`.
pub fn check_address(what: &str, address: &str) -> Result<(), OpsError> {
    let ok = address.split_once('@').is_some_and(|(l, d)| {
        !l.is_empty() && d.contains('.') && !address.contains(char::is_whitespace)
    });
    if ok {
        Ok(())
    } else {
        Err(OpsError::refused(format!(
            "{what} {address:?} is not a mail address such as alice@contoso.com"
        )))
    }
}

/// Add an account; an incomplete app credential removes it again and
/// says so.
pub fn add(store: &Store, new: NewAccountRequest) -> Result<Account, OpsError> {
    let mailbox = new.mailbox.clone().unwrap_or_else(|| new.login.clone());
    check_address("--mailbox", &mailbox)?;
    for a in new.aliases.iter().chain(&new.shared) {
        check_address("--alias/--shared", a)?;
    }
    if new.password.expose().is_empty() {
        return Err(OpsError::refused(
            "the password is empty; legacy applications need a non-empty password",
        ));
    }
    let account = store.add_account(&NewAccount {
        login: new.login.clone(),
        password: new.password,
        mailbox,
        auth_profile: if new.app_only {
            AuthProfile::AppOnly
        } else {
            AuthProfile::Delegated
        },
        aliases: new.aliases,
        shared_mailboxes: new.shared,
    })?;
    if !new.sent_copy {
        store.set_save_to_sent_items(&account.login, false)?;
    }
    apply_settings(store, &account.login, &new.settings)?;
    let credential = new.credential;
    if credential != AppCredential::default() {
        let secret = credential.client_secret_file.is_some();
        let cert = credential.certificate_file.is_some() || credential.private_key_file.is_some();
        let complete =
            credential.certificate_file.is_some() == credential.private_key_file.is_some();
        if (secret && cert) || !complete {
            store.remove_account(&account.login)?;
            return Err(OpsError::refused(
                "give either --client-secret-file, or --certificate-file with \
                 --private-key-file; nothing was added",
            ));
        }
        store.set_app_credential(&account.login, Some(&credential))?;
    }
    Ok(store.account(&account.login)?.unwrap_or(account))
}

/// `list` with `add` added and `remove` taken out (addresses compared
/// without case), or None when nothing changes.
pub fn edit_list(list: &[String], add: &[String], remove: &[String]) -> Option<Vec<String>> {
    let same = |a: &String, b: &String| a.eq_ignore_ascii_case(b);
    let mut out: Vec<String> = list
        .iter()
        .filter(|a| !remove.iter().any(|r| same(a, r)))
        .cloned()
        .collect();
    for a in add {
        if !out.iter().any(|x| same(x, a)) {
            out.push(a.clone());
        }
    }
    (out != list).then_some(out)
}

/// Apply address-list edits to `login`, saying what changed.
pub fn apply_lists(store: &Store, login: &str, edits: &ListEdits) -> Result<Vec<String>, OpsError> {
    for a in edits.add_aliases.iter().chain(&edits.add_shared) {
        check_address("--alias/--shared", a)?;
    }
    let Some(account) = store.account(login)? else {
        return Err(crate::store::StoreError::NoSuchAccount(login.to_string()).into());
    };
    let mut said = Vec::new();
    let show = |l: &[String]| {
        if l.is_empty() {
            "none".to_string()
        } else {
            l.join(", ")
        }
    };
    if let Some(aliases) = edit_list(&account.aliases, &edits.add_aliases, &edits.remove_aliases) {
        store.set_aliases(&account.login, &aliases)?;
        said.push(format!("From aliases: {}", show(&aliases)));
    }
    if let Some(shared) = edit_list(
        &account.shared_mailboxes,
        &edits.add_shared,
        &edits.remove_shared,
    ) {
        store.set_shared_mailboxes(&account.login, &shared)?;
        said.push(format!("shared mailboxes: {}", show(&shared)));
    }
    Ok(said)
}

/// Apply `settings` to `login`, saying what changed.
pub fn apply_settings(
    store: &Store,
    login: &str,
    settings: &Settings,
) -> Result<Vec<String>, OpsError> {
    let mut said = Vec::new();
    if let Some(folder) = &settings.imap_inbox {
        let folder = folder.trim();
        if folder.is_empty() || folder.eq_ignore_ascii_case("INBOX") {
            store.set_imap_inbox(login, None)?;
            said.push("IMAP INBOX: the mailbox's Inbox".to_string());
        } else {
            store.set_imap_inbox(login, Some(folder))?;
            said.push(format!(
                "IMAP INBOX: {folder} (its own name is now \"Inbox (mailbox)\" when it is \
                 the mailbox's Inbox that moves aside)"
            ));
        }
    }
    if let Some(keep) = settings.keep_fetched {
        store.set_keep_fetched(login, keep)?;
        said.push(if keep {
            "fetched mail stays on the server".to_string()
        } else {
            "fetched mail is deleted when the IMAP session closes the folder or logs out"
                .to_string()
        });
    }
    if let Some(policy) = settings.sender_policy {
        let recorded = (policy != SenderPolicy::Keep).then_some(policy.as_str());
        store.set_sender_policy(login, recorded)?;
        said.push(format!("sender policy: {}", policy.as_str()));
    }
    if let Some(copy) = settings.sent_copy {
        store.set_save_to_sent_items(login, copy)?;
        said.push(format!(
            "Sent Items copy of SMTP submissions: {}",
            if copy { "yes" } else { "no" }
        ));
    }
    Ok(said)
}

/// The sender policy in force for `login` (the default, keep, when none
/// is recorded).
pub fn sender_policy(store: &Store, login: &str) -> Result<SenderPolicy, OpsError> {
    Ok(store
        .sender_policy(login)?
        .and_then(|p| p.parse().ok())
        .unwrap_or(SenderPolicy::Keep))
}

/// Remove `login` and its tokens (the store refuses while it has mail in
/// the spool).
pub fn remove(store: &Store, login: &str) -> Result<(), OpsError> {
    Ok(store.remove_account(login)?)
}
