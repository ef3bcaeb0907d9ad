//! `graphgate keys rotate`: a new token-encryption key, and every sealed
//! value in the store (the `tokens` table is the only one: app credentials
//! stay in their files) re-sealed with it in one SQLite transaction.
//!
//! The key file in the data directory is replaced in an order where a crash
//! at any point leaves keys that open every row:
//!
//! 0. A `graphgate.key.old` left by an interrupted rotation is finished
//!    first: every row is re-sealed with the current key (each opened with
//!    whichever of the two keys its `key_id` names), then `.old` goes.
//! 1. The new key is written to `graphgate.key.new` (0600, fsync) and the
//!    current key copied to `graphgate.key.old` (0600, fsync, dir fsync).
//!    A crash here leaves `graphgate.key` unchanged: the stray files are
//!    harmless (`.old` holds the key in use).
//! 2. `graphgate.key.new` is renamed over `graphgate.key` (atomic; dir
//!    fsync). From here the loader finds the new key *and* `.old`
//!    ([`StoreKey::load`] keeps it as the previous key), and rows are opened
//!    with whichever key their `key_id` names — rows still sealed with the
//!    old key, and rows a gateway sealed with the new one after a crash.
//! 3. Every row is re-sealed with the new key in one transaction.
//! 4. Only after the commit is `graphgate.key.old` removed.
//!
//! A key from `GRAPHGATE_KEY` or `GRAPHGATE_KEY_FILE` is the operator's to
//! replace: graphgate re-seals with `--new-key-file` (a commit switches
//! every row at once) and says where to point the variable afterwards.
//!
//! The spool's owner lock is held throughout, so no gateway (which keeps
//! the key in memory and seals refreshed tokens with it) runs meanwhile.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::Config;
use crate::spool::owner::{OwnerRole, SpoolOwner};
use crate::store::crypto::old_key_path;
use crate::store::{KeySource, Store, StoreKey};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a new token-encryption key and re-seal every stored token
    /// with it (stop the gateway first). With --new-key-file, use that key
    /// instead (required when the key comes from GRAPHGATE_KEY or
    /// GRAPHGATE_KEY_FILE).
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// A file holding the new key (64 hex digits, mode 0600), e.g. made
    /// with `openssl rand -hex 32 > new.key`.
    #[arg(long, value_name = "PATH")]
    new_key_file: Option<PathBuf>,
}

pub fn run(config: &Config, command: &KeysCommand) -> anyhow::Result<ExitCode> {
    let KeysCommand::Rotate(args) = command;
    let data_dir = &config.data_dir;
    let store = super::open_store(config)?;
    let _owner = match SpoolOwner::try_acquire(data_dir, OwnerRole::KeyRotation) {
        Ok(Ok(owner)) => owner,
        Ok(Err(holder)) => anyhow::bail!(
            "{holder} uses the data directory {}; it keeps the current key in memory and would \
             seal refreshed tokens with it. Stop it, then run `graphgate keys rotate` again",
            data_dir.display()
        ),
        Err(e) => anyhow::bail!(
            "cannot lock the spool in {}: {e}; check that the data directory is writable",
            data_dir.display()
        ),
    };
    let new_bytes = match &args.new_key_file {
        Some(path) => read_new_key(path)?,
        None => rand::random(),
    };
    let external = std::env::var_os("GRAPHGATE_KEY").is_some()
        || std::env::var_os("GRAPHGATE_KEY_FILE").is_some();
    if external {
        return rotate_external(&store, data_dir, args.new_key_file.as_deref(), new_bytes);
    }
    let key_file = data_dir.join("graphgate.key");
    if !key_file.exists() {
        anyhow::bail!(
            "there is no key to rotate: {} does not exist (it is created when a gateway first \
             stores tokens)",
            key_file.display()
        );
    }
    let current = StoreKey::load(data_dir)?;
    let old_file = old_key_path(&key_file);
    // 0. Finish an interrupted rotation.
    if old_file.exists() {
        let n = store.reseal_tokens(&current, &current)?;
        remove_synced(&old_file)?;
        println!(
            "finished an interrupted rotation: {n} token set(s) re-sealed with key {}",
            current.id()
        );
    }
    let current = StoreKey::load(data_dir)?;
    let new = StoreKey::from_bytes(new_bytes);
    if new.id() == current.id() {
        anyhow::bail!("the new key is the key in use; give another one");
    }
    // 1. The new key beside the current one, and a copy of the current.
    let new_file = {
        let mut name = key_file.as_os_str().to_owned();
        name.push(".new");
        PathBuf::from(name)
    };
    write_key(&new_file, &new)?;
    write_key(&old_file, &current)?;
    sync_dir(data_dir)?;
    // 2. Install it.
    std::fs::rename(&new_file, &key_file)?;
    sync_dir(data_dir)?;
    // 3. Re-seal every row (opened with the old key, kept as `previous`).
    let holding_both = StoreKey::load(data_dir)?;
    let n = store.reseal_tokens(&holding_both, &new)?;
    // 4. The old key opens nothing any more.
    remove_synced(&old_file)?;
    println!(
        "rotated the token key: {} -> {}; {n} token set(s) re-sealed; {} holds the new key \
         (back it up: the old one no longer opens anything)",
        current.id(),
        new.id(),
        key_file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The key comes from the environment: re-seal with `--new-key-file`, or
/// say how.
fn rotate_external(
    store: &Store,
    data_dir: &Path,
    new_key_file: Option<&Path>,
    new_bytes: [u8; 32],
) -> anyhow::Result<ExitCode> {
    let current = StoreKey::load(data_dir)?;
    let origin = match current.source() {
        KeySource::File(p) => format!("GRAPHGATE_KEY_FILE ({})", p.display()),
        _ => "GRAPHGATE_KEY".to_string(),
    };
    let Some(path) = new_key_file else {
        anyhow::bail!(
            "the token key comes from {origin}, which graphgate does not write. Rotate it \
             yourself: make a new key (`openssl rand -hex 32 > new.key; chmod 600 new.key`), \
             run `graphgate keys rotate --new-key-file new.key` with the current key still \
             set, then point GRAPHGATE_KEY_FILE at new.key (or put its contents in \
             GRAPHGATE_KEY) before starting the gateway"
        );
    };
    let new = StoreKey::from_bytes(new_bytes);
    if new.id() == current.id() {
        anyhow::bail!("the new key is the key in use; give another one");
    }
    let n = store.reseal_tokens(&current, &new)?;
    println!(
        "re-sealed {n} token set(s) with the key in {} ({} -> {}). Now point \
         GRAPHGATE_KEY_FILE at {} (or put its contents in GRAPHGATE_KEY) instead of {origin}: \
         the old key no longer opens the tokens",
        path.display(),
        current.id(),
        new.id(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_new_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    crate::config::check_private_file(path, "the new key file")?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    StoreKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn write_key(path: &Path, key: &StoreKey) -> anyhow::Result<()> {
    let text = format!("{}\n", key.to_hex().expose());
    crate::config::write_private_file(path, text.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

fn remove_synced(path: &Path) -> anyhow::Result<()> {
    std::fs::remove_file(path)
        .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", path.display()))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Make renames, creations and removals in `dir` durable.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
