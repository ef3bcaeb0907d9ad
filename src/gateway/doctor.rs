//! The checks of `graphgate doctor` (which prints them) and the console's
//! Doctor page (which shows them): everything graphgate depends on, one
//! finding each, with its fix — configuration, file
//! permissions, listener ports, the TLS certificate, the clock against the
//! Entra ID authority, and every account's token, the Graph permissions it
//! really carries, a probe read and what can be said about sending without
//! sending. The exit status is non-zero when any check FAILs.
//!
//! Line format (fixed: scripts grep it): `ok|warn|FAIL  <what>: <detail> —
//! fix: <how>`; `--json` gives the same findings as one object. Neither
//! ever contains a token, a key or a secret: secrets are only checked for
//! their file mode and whether they parse.

mod accounts;
mod network;
mod tls;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, KEYS, env_name};
use crate::spool::owner::{Holder, SpoolOwner};
use crate::store::{SpoolState, Store, now_unix};

pub(crate) use accounts::{fresh_token, permission_fix, token_permissions};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One checked thing: what, what was found, and what to do about it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub level: Level,
    pub check: String,
    pub detail: String,
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(check: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            level: Level::Ok,
            check: check.into(),
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn warn(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            level: Level::Warn,
            check: check.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn fail(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            level: Level::Fail,
            check: check.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// `ok    what: detail`, `FAIL  what: detail — fix: how`.
    pub fn line(&self) -> String {
        let level = match self.level {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        let detail = self.detail.trim_end_matches('.').replace(['\r', '\n'], " ");
        match &self.fix {
            Some(fix) => format!("{level:<4}  {}: {detail} — fix: {fix}", self.check),
            None => format!("{level:<4}  {}: {detail}", self.check),
        }
    }
}

/// The findings so far.
#[derive(Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn push(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    pub fn failed(&self) -> bool {
        self.findings.iter().any(|f| f.level == Level::Fail)
    }
}

/// Every check's finding, in order (what `graphgate doctor` prints and
/// the console's Doctor page shows).
pub async fn findings(config_file: Option<PathBuf>, data_dir: Option<PathBuf>) -> Vec<Finding> {
    let mut report = Report::default();
    if let Some(config) = check_config(config_file.as_deref(), data_dir, &mut report) {
        check_host(&config, config_file.as_deref(), &mut report).await;
        accounts::check_accounts(&config, &mut report).await;
    }
    report.findings
}

/// The TLS certificate's finding alone (its expiry, for the console's
/// dashboard).
pub fn certificate(config: &Config) -> Vec<Finding> {
    let mut report = Report::default();
    tls::check_certificate(config, &mut report);
    report.findings
}

/// A TOML error on one line: its location and its reason, without the
/// excerpt and caret lines (`13 | key = …`, `   | ^^^`).
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| {
            let rest = l
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !l.is_empty() && !rest.starts_with('|')
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// Everything about this host (not about the accounts).
async fn check_host(config: &Config, config_file: Option<&Path>, report: &mut Report) {
    let db = check_data_dir(&config.data_dir, report);
    check_permissions(config, config_file, db, report);
    let holder = SpoolOwner::holder(&config.data_dir).ok().flatten();
    network::check_ports(config, holder.as_ref(), report).await;
    tls::check_certificate(config, report);
    network::check_clock(config, report).await;
    if db {
        check_spool(&config.data_dir, holder.as_ref(), report);
    }
}

/// The configuration loads (file + environment) and its values make sense.
fn check_config(
    file: Option<&Path>,
    data_dir: Option<PathBuf>,
    report: &mut Report,
) -> Option<Config> {
    let origin = match file {
        Some(f) => f.display().to_string(),
        None => "no file (defaults)".to_string(),
    };
    let mut config = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            report.push(Finding::fail(
                "configuration",
                one_line(&e.to_string()),
                "correct the key or variable named (unknown keys are refused; `graphgate config \
                 example` lists every key), then run `graphgate doctor` again",
            ));
            return None;
        }
    };
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    let variables = std::env::vars()
        .filter(|(name, _)| KEYS.iter().any(|k| env_name(k.key) == *name))
        .count();
    report.push(Finding::ok(
        "configuration",
        format!("{origin} with {variables} GRAPHGATE_* variable(s): every key known and typed"),
    ));
    for (key, result) in [
        (
            "smtp.listen / smtp.implicit_tls_listen",
            config.smtp_listen().map(|_| ()),
        ),
        (
            "imap.listen / imap.implicit_tls_listen",
            config.imap_listen().map(|_| ()),
        ),
        (
            "pop3.listen / pop3.implicit_tls_listen",
            config.pop3_listen().map(|_| ()),
        ),
        ("admin.listen", config.admin_listen().map(|_| ())),
    ] {
        if let Err(e) = result {
            report.push(Finding::fail(
                format!("configuration {key}"),
                e.to_string(),
                "write an address such as 127.0.0.1:2525, or leave it empty to turn it off",
            ));
        }
    }
    if config.microsoft.client_id.trim().is_empty() {
        report.push(Finding::fail(
            "configuration microsoft.client_id",
            "empty: no account can sign in",
            "set it to the Application (client) ID of your app registration (Entra admin \
             center > App registrations > Overview), or GRAPHGATE_MICROSOFT_CLIENT_ID",
        ));
    }
    if let Err(e) =
        crate::gateway::authority_from_config(&config).and_then(crate::auth::EntraClient::new)
    {
        report.push(Finding::fail(
            "configuration microsoft.*",
            e.to_string(),
            e.remedy("<account>"),
        ));
    }
    if config.log.format != "text" && config.log.format != "json" {
        report.push(Finding::warn(
            "configuration log.format",
            format!("{:?} is neither text nor json", config.log.format),
            "set log.format to text or json",
        ));
    }
    Some(config)
}

/// The data directory exists, is writable and private; returns whether a
/// database is there.
fn check_data_dir(dir: &Path, report: &mut Report) -> bool {
    let what = "data directory";
    let meta = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => {
            report.push(Finding::fail(
                what,
                format!("{} is not a directory", dir.display()),
                "point data_dir (GRAPHGATE_DATA_DIR, --data-dir) at a directory",
            ));
            return false;
        }
        Err(e) => {
            report.push(Finding::fail(
                what,
                format!("{}: {e}", dir.display()),
                "create it (`graphgate accounts add` does, with mode 0700) or fix data_dir",
            ));
            return false;
        }
    };
    match tempfile::Builder::new()
        .prefix(".graphgate-doctor-")
        .tempfile_in(dir)
    {
        Ok(_) => {}
        Err(e) => report.push(Finding::fail(
            what,
            format!("{} is not writable: {e}", dir.display()),
            format!(
                "make it writable by the user graphgate runs as (chown that user {0}; chmod 700 {0})",
                dir.display()
            ),
        )),
    }
    let mode = file_mode(&meta);
    if mode & 0o077 != 0 {
        report.push(Finding::warn(
            what,
            format!(
                "{} is open to group or others (mode {mode:04o}); it holds the database and the spool",
                dir.display()
            ),
            format!("chmod 700 {}", dir.display()),
        ));
    } else {
        report.push(Finding::ok(
            what,
            format!("{} writable, mode {mode:04o}", dir.display()),
        ));
    }
    let db = Store::path_in(dir);
    if !db.exists() {
        report.push(Finding::fail(
            "database",
            format!("no database at {}", db.display()),
            "add an account with `graphgate accounts add LOGIN` (it creates the database), or \
             point --data-dir at the directory `graphgate serve` uses",
        ));
        return false;
    }
    true
}

#[cfg(unix)]
fn file_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn file_mode(_meta: &std::fs::Metadata) -> u32 {
    0o600
}

/// A file holding a secret: readable by us, by nobody else (mode bits, so
/// this holds for root too).
pub(super) fn check_secret_file(what: &str, path: &Path, key: &str, report: &mut Report) {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            report.push(Finding::fail(
                what,
                format!("{}: {e}", path.display()),
                format!("fix the path in {key}, or create the file"),
            ));
            return;
        }
    };
    if let Err(e) = std::fs::File::open(path) {
        report.push(Finding::fail(
            what,
            format!("{} cannot be read: {e}", path.display()),
            format!(
                "make it readable by the user graphgate runs as (chown that user {})",
                path.display()
            ),
        ));
        return;
    }
    let mode = file_mode(&meta);
    if mode & 0o066 != 0 {
        report.push(Finding::fail(
            what,
            format!(
                "{} is readable or writable by group or others (mode {mode:04o})",
                path.display()
            ),
            format!(
                "chmod 600 {} (owned by the user graphgate runs as; for a Docker secret, \
                 mount it with mode 0400)",
                path.display()
            ),
        ));
    } else {
        report.push(Finding::ok(
            what,
            format!("{} mode {mode:04o}", path.display()),
        ));
    }
}

fn check_permissions(config: &Config, config_file: Option<&Path>, db: bool, report: &mut Report) {
    if let Some(file) = config_file
        && let Ok(meta) = std::fs::metadata(file)
    {
        let mode = file_mode(&meta);
        if mode & 0o022 != 0 {
            report.push(Finding::fail(
                "configuration file",
                format!(
                    "{} is writable by group or others (mode {mode:04o}): they could point \
                     graphgate at another authority",
                    file.display()
                ),
                format!("chmod 600 {}", file.display()),
            ));
        } else if mode & 0o044 != 0 {
            report.push(Finding::fail(
                "configuration file",
                format!(
                    "{} is readable by group or others (mode {mode:04o}); it names where the \
                     secrets are, and `graphgate serve` refuses to start with it",
                    file.display()
                ),
                format!("chmod 600 {}", file.display()),
            ));
        } else {
            report.push(Finding::ok(
                "configuration file",
                format!("{} mode {mode:04o}", file.display()),
            ));
        }
    }
    check_store_key(&config.data_dir, db, report);
    let m = &config.microsoft;
    if let Some(p) = &m.client_secret_file {
        check_secret_file(
            "client secret file",
            p,
            "microsoft.client_secret_file",
            report,
        );
    }
    if let Some(p) = &m.private_key_file {
        check_secret_file(
            "app certificate private key",
            p,
            "microsoft.private_key_file",
            report,
        );
    }
    // App-only accounts with their own app registration name their files.
    let accounts = if db {
        Store::open(&config.data_dir)
            .and_then(|s| s.accounts())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    for account in accounts {
        let Some(own) = &account.app_credential else {
            continue;
        };
        let setting = format!("`graphgate accounts add {} --app-only …`", account.login);
        if let Some(p) = &own.client_secret_file {
            let what = format!("account {} client secret file", account.login);
            check_secret_file(&what, p, &setting, report);
        }
        if let Some(p) = &own.private_key_file {
            let what = format!("account {} certificate private key", account.login);
            check_secret_file(&what, p, &setting, report);
        }
    }
}

/// The token-encryption key: where it comes from, its mode, that it parses.
/// Never creates it (`StoreKey::load` would, silently orphaning tokens).
fn check_store_key(data_dir: &Path, db: bool, report: &mut Report) {
    let what = "token key";
    if let Ok(text) = std::env::var("GRAPHGATE_KEY") {
        match crate::store::StoreKey::parse(&text) {
            Ok(_) => report.push(Finding::ok(what, "from GRAPHGATE_KEY (environment)")),
            Err(e) => report.push(Finding::fail(
                what,
                format!("GRAPHGATE_KEY: {e}"),
                "set it to 32 bytes as 64 hex digits (`openssl rand -hex 32`)",
            )),
        }
        return;
    }
    let (path, key) = match std::env::var("GRAPHGATE_KEY_FILE") {
        Ok(p) => (PathBuf::from(p), "GRAPHGATE_KEY_FILE"),
        Err(_) => (data_dir.join("graphgate.key"), "<data dir>/graphgate.key"),
    };
    if !path.exists() && key != "GRAPHGATE_KEY_FILE" {
        if db {
            report.push(Finding::fail(
                what,
                format!(
                    "{} is missing: tokens stored in the database cannot be opened",
                    path.display()
                ),
                "restore the key file from a backup, or sign every account in again \
                 (`graphgate login LOGIN`)",
            ));
        } else {
            report.push(Finding::ok(
                what,
                format!("{} will be created on first use", path.display()),
            ));
        }
        return;
    }
    check_secret_file(what, &path, key, report);
    let old = crate::store::crypto::old_key_path(&path);
    if key != "GRAPHGATE_KEY_FILE" && old.exists() {
        report.push(Finding::warn(
            what,
            format!(
                "{} is left by an interrupted `graphgate keys rotate` (tokens still open \
                 with either key)",
                old.display()
            ),
            "stop the gateway and run `graphgate keys rotate` again to finish it",
        ));
    }
    // An unreadable file was reported by check_secret_file.
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Err(e) = crate::store::StoreKey::parse(&text)
    {
        report.push(Finding::fail(
            what,
            format!("{}: {e}", path.display()),
            "put 32 bytes as 64 hex digits in it (`openssl rand -hex 32`) — and sign the \
             accounts in again, since their tokens were sealed with the old key",
        ));
    }
}

/// Whether a gateway delivers this data directory's spool, and what waits.
fn check_spool(data_dir: &Path, holder: Option<&Holder>, report: &mut Report) {
    let running = match holder {
        Some(h) => format!("{h} delivers it"),
        None => "no gateway is running on this data directory".to_string(),
    };
    let Ok(store) = Store::open(data_dir) else {
        return;
    };
    let Ok(entries) = store.spool_list(None, None) else {
        return;
    };
    let now = now_unix();
    let waiting: Vec<_> = entries
        .iter()
        .filter(|e| matches!(e.state, SpoolState::Queued | SpoolState::Sending))
        .collect();
    let oldest = waiting.iter().map(|e| now - e.accepted_at).max();
    match oldest {
        None => report.push(Finding::ok("spool", format!("empty; {running}"))),
        Some(age) if age > 3600 => report.push(Finding::warn(
            "spool",
            format!(
                "{} message(s) waiting, the oldest for {} min; {running}",
                waiting.len(),
                age / 60
            ),
            "`graphgate queue list` shows why (last error); fix that, then `graphgate queue \
             retry --all`",
        )),
        Some(age) => report.push(Finding::ok(
            "spool",
            format!(
                "{} message(s) waiting, the oldest for {age} s; {running}",
                waiting.len()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_errors_fit_on_one_line() {
        let e = "f.toml: TOML parse error at line 13, column 1\n   |\n13 | listen_adress = 1\n   | ^^^^^\nunknown field `listen_adress`\n";
        assert_eq!(
            one_line(e),
            "f.toml: TOML parse error at line 13, column 1: unknown field `listen_adress`"
        );
    }

    #[test]
    fn lines_have_the_fixed_shape() {
        assert_eq!(
            Finding::ok("clock", "+0 s against x").line(),
            "ok    clock: +0 s against x"
        );
        assert_eq!(
            Finding::fail("token key", "mode 0644.", "chmod 600 k").line(),
            "FAIL  token key: mode 0644 — fix: chmod 600 k"
        );
        assert_eq!(
            Finding::warn("spool", "old", "retry").line(),
            "warn  spool: old — fix: retry"
        );
    }
}
