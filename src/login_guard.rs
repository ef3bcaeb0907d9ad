//! The auth penalty shared by SMTP AUTH and IMAP LOGIN / AUTHENTICATE (one
//! [`LoginGuard`] per gateway, so guessing over IMAP counts against SMTP
//! too). Shaped after Dovecot's auth penalty (doc.dovecot.org, "Authentication
//! Penalty": a failure delays the next answer, doubling up to a cap of
//! 15 s, per remote IP and user name; a success resets it), with two
//! additions Dovecot lacks: attempts in flight count, and a per-address
//! budget.
//!
//! - **Per (address, login) pair** (login case-folded): the first
//!   `free_failures` failures are answered at once; after them every
//!   attempt of that pair waits `delay`, doubled per further failure, up to
//!   `max_delay`, *before* its password is checked. After `lockout_after`
//!   failures the pair is refused unchecked for `lockout` (SMTP `454 4.7.0`,
//!   RFC 4954 §6; IMAP `NO [UNAVAILABLE]`, RFC 5530), saying how long and
//!   how to lift it (`graphgate accounts unlock LOGIN`). The correct
//!   password of a locked pair is refused too: it is that pair's own
//!   failures, and a lock that let the right guess through would be only a
//!   delay. A success clears the pair.
//! - **Attempts in flight count**: once a pair's failures plus its
//!   attempts being checked reach `lockout_after`, a further attempt waits
//!   for one of them to finish (at most [`BUSY_WAIT`]) and is then decided
//!   again: N parallel wrong attempts get at most `lockout_after` password
//!   checks, not N (the first ones fail and lock the pair, the waiting ones
//!   are then refused unchecked), while N parallel *correct* logins of one
//!   application's connection pool all pass, a few at a time.
//! - **Per address**: once `address_budget` *other* logins have live
//!   failures from an address, a login with a failure (or an attempt in
//!   flight) of its own from there is refused unchecked. A login without
//!   one is still checked, so the correct password of an account that did
//!   nothing wrong passes at once — one misconfigured application on
//!   127.0.0.1 never locks the others out — while guessing across logins
//!   gets one check per login per `forget_after`.
//! - **Unknown logins** take the same path and the same time as known ones
//!   (the store verifies a dummy Argon2id hash; `/metrics` counts it).
//! - **Verified credentials** ([`cache`], `login_limit.verified_cache_s`):
//!   once admitted, an attempt whose password passed Argon2id within the
//!   TTL, on the account's unchanged password hash and tokens, is answered
//!   from an HMAC tag instead; any failure of the login drops it.
//!
//! The counts live in the store ([`crate::store::login_failures`]), so
//! `graphgate accounts unlock` — another process — lifts a penalty the
//! running gateway honours at the next attempt; attempts in flight live
//! here. Stored times are the wall clock (unix ms); the waits are
//! [`tokio::time::sleep`], so tests can pause them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::secret::Secret;
use crate::store::login_failures::PairFailures;
use crate::store::{Account, Store};

/// Thresholds (`login_limit.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures of a pair answered without delay.
    pub free_failures: u32,
    /// Wait before the first slowed attempt; doubled per further failure.
    pub delay: Duration,
    pub max_delay: Duration,
    /// Failures (with attempts in flight) after which a pair is refused;
    /// 0 = never.
    pub lockout_after: u32,
    /// How long a pair is refused.
    pub lockout: Duration,
    /// Other logins failing from one address before the address is
    /// throttled; 0 = no budget.
    pub address_budget: u32,
    /// A pair's failures are forgotten this long after its last one.
    pub forget_after: Duration,
    /// How long a verified password is checked against the
    /// verified-credentials cache instead of Argon2id ([`cache`]); zero:
    /// off.
    pub verified_for: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            free_failures: 3,
            delay: Duration::from_secs(1),
            // Dovecot's AUTH_PENALTY_MAX_SECS.
            max_delay: Duration::from_secs(15),
            lockout_after: 10,
            lockout: Duration::from_secs(5 * 60),
            address_budget: 10,
            forget_after: Duration::from_secs(15 * 60),
            // Dovecot's auth_cache_ttl is an hour; a few minutes covers
            // clients that poll every minute or open parallel connections.
            verified_for: Duration::from_secs(5 * 60),
        }
    }
}

/// Why an attempt was refused without a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This login failed `lockout_after` times from this address.
    Locked,
    /// Enough attempts for this login from this address are being checked
    /// to reach the lock if they fail.
    Busy,
    /// This address failed for `address_budget` other logins, and this
    /// login failed from here too.
    AddressThrottled,
    /// The login records could not be read (the store failed: logged).
    Unavailable,
}

/// What to do with a login attempt before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Check the password after waiting this long (zero: at once).
    Proceed { wait: Duration },
    /// Refuse without checking; attempts resume after `retry_in`.
    Refuse { reason: Refusal, retry_in: Duration },
}

/// A refusal, with what a reply needs to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub reason: Refusal,
    pub retry_in: Duration,
    pub login: String,
    pub address: IpAddr,
}

impl Refused {
    /// The sentence after `454 4.7.0` / `NO [UNAVAILABLE]`: what happened,
    /// for how long, and the fix.
    pub fn sentence(&self) -> String {
        let (login, address, s) = (printable(&self.login), self.address, seconds(self.retry_in));
        match self.reason {
            Refusal::Locked => format!(
                "Too many failed logins for {login} from {address}: refused for {s} more \
                 seconds; wait, or an administrator runs `graphgate accounts unlock {login}`"
            ),
            Refusal::Busy => format!(
                "Too many login attempts for {login} from {address} at once; wait {s} seconds \
                 and try again"
            ),
            Refusal::AddressThrottled => format!(
                "Too many failed logins for different logins from {address}, and {login} failed \
                 too: refused for {s} seconds; wait, or an administrator runs \
                 `graphgate accounts unlock --address {address}`"
            ),
            Refusal::Unavailable => "The gateway cannot read its login records (a database \
                 error, see its log); try again in a moment"
                .to_string(),
        }
    }
}

/// A client-supplied login as it may appear in a reply line: no control
/// characters (a CR LF would end the reply and forge another), no spaces,
/// at most 100 characters.
fn printable(login: &str) -> String {
    let mut out: String = login
        .chars()
        .take(100)
        .map(|c| {
            if c.is_control() || c.is_whitespace() {
                '?'
            } else {
                c
            }
        })
        .collect();
    if login.chars().count() > 100 {
        out.push('…');
    }
    out
}

/// The outcome of [`LoginGuard::check`].
pub enum Checked {
    Account(Box<Account>),
    /// Wrong login or password (or the store failed: logged).
    Wrong,
    /// Refused unchecked.
    Refused(Refused),
}

/// What [`LoginGuard::judge`] decided.
enum Judged<T> {
    Passed(T),
    Wrong,
    Refused(Refused),
}

/// The login the web console's admin password is counted under (the
/// penalty's pair is this and the browser's address;
/// `graphgate accounts unlock '(console)'` lifts it).
pub const CONSOLE_LOGIN: &str = "(console)";

/// `retry_in` rounded up to whole seconds, for replies.
pub fn seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Wall-clock unix milliseconds (stored times outlive the process).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn until(t: i64, now: i64) -> Duration {
    Duration::from_millis(u64::try_from(t.saturating_sub(now)).unwrap_or(0))
}

/// The pair key of a login: case-folded, and at most 320 characters (the
/// longest address, RFC 3696 errata 1690: 64 + 1 + 255) — a client may
/// send a login of any length, and it is stored.
pub fn login_key(login: &str) -> String {
    login.chars().take(320).collect::<String>().to_lowercase()
}

/// The address key: an IPv4-mapped IPv6 address is its IPv4 address.
pub fn address_key(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

/// What the guard knows of one attempt's pair and address.
#[derive(Debug, Clone, Copy, Default)]
pub struct View {
    /// The pair's live failures.
    pub pair: Option<PairFailures>,
    /// The pair's attempts being checked now (this one not included).
    pub in_flight: u32,
    /// Other logins with live failures from the address.
    pub others_failing: u32,
}

type PairKey = (String, String);

/// The longest an attempt waits for a place among its pair's attempts in
/// flight before it is refused as busy.
pub const BUSY_WAIT: Duration = Duration::from_secs(30);

/// The penalty policy, the attempts in flight and the verified-credentials
/// cache of one gateway.
#[derive(Debug)]
pub struct LoginGuard {
    limits: LoginLimits,
    in_flight: Arc<Mutex<HashMap<PairKey, u32>>>,
    /// Woken whenever an attempt in flight ends.
    released: Arc<tokio::sync::Notify>,
    verified: cache::VerifiedCache,
}

impl Default for LoginGuard {
    fn default() -> Self {
        LoginGuard::new(LoginLimits::default())
    }
}

/// An admitted attempt: counts as in flight until dropped (also when the
/// client disconnects mid-check).
struct InFlight {
    map: Arc<Mutex<HashMap<PairKey, u32>>>,
    key: PairKey,
    released: Arc<tokio::sync::Notify>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut map) = self.map.lock()
            && let Some(n) = map.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
        self.released.notify_waiters();
    }
}

impl LoginGuard {
    pub fn new(limits: LoginLimits) -> LoginGuard {
        LoginGuard {
            verified: cache::VerifiedCache::new(limits.verified_for),
            limits,
            in_flight: Arc::default(),
            released: Arc::default(),
        }
    }

    /// [`Self::admit`], waiting while the pair is only busy (its attempts
    /// in flight fill what its failures leave), at most [`BUSY_WAIT`].
    async fn admit_when_free(
        &self,
        store: &Store,
        ip: IpAddr,
        login: &str,
    ) -> (Admission, Option<PairFailures>, Option<InFlight>) {
        let deadline = tokio::time::Instant::now() + BUSY_WAIT;
        loop {
            // Registered before the look, so a release in between is seen.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let decided = self.admit(store, ip, login, now_ms());
            let busy = matches!(
                decided.0,
                Admission::Refuse {
                    reason: Refusal::Busy,
                    ..
                }
            );
            if !busy || tokio::time::Instant::now() >= deadline {
                return decided;
            }
            let _ = tokio::time::timeout_at(deadline, released).await;
        }
    }

    pub fn limits(&self) -> &LoginLimits {
        &self.limits
    }

    /// Forget every verified login (a new cache key in effect): the next
    /// login of each runs Argon2id again.
    pub fn forget_verified(&self) {
        self.verified.clear();
    }

    /// The wait before an attempt after `failures` failures.
    pub fn wait_after(&self, failures: u32) -> Duration {
        let Some(extra) = failures.checked_sub(self.limits.free_failures) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(extra.min(31)).unwrap_or(u32::MAX);
        self.limits
            .delay
            .saturating_mul(factor)
            .min(self.limits.max_delay)
    }

    /// The policy: admit or refuse an attempt given `view` at `now` (unix
    /// ms). An address refusal's `retry_in` is filled in by the caller.
    pub fn decide(&self, view: &View, now: i64) -> Admission {
        let l = &self.limits;
        let failures = view.pair.map_or(0, |p| p.failures);
        if let Some(locked) = view.pair.and_then(|p| p.locked_until).filter(|t| *t > now) {
            return Admission::Refuse {
                reason: Refusal::Locked,
                retry_in: until(locked, now),
            };
        }
        let pending = failures.saturating_add(view.in_flight);
        if l.lockout_after > 0 && pending >= l.lockout_after {
            return Admission::Refuse {
                reason: Refusal::Busy,
                retry_in: self.wait_after(pending).max(Duration::from_secs(1)),
            };
        }
        if l.address_budget > 0
            && view.others_failing >= l.address_budget
            && (failures > 0 || view.in_flight > 0)
        {
            return Admission::Refuse {
                reason: Refusal::AddressThrottled,
                retry_in: Duration::ZERO,
            };
        }
        // Attempts in flight slow a pair down only once it has failed: a
        // help desk's five parallel LOGINs of one login with the right
        // password are not guesses, and waited 1-2 s each when they counted
        // (imaptest stress: 146 logins in 60 s at 5 clients). Parallel
        // guesses of a clean pair are still capped by the lock above
        // (`pending >= lockout_after`).
        let wait = if failures == 0 {
            Duration::ZERO
        } else {
            self.wait_after(pending)
        };
        Admission::Proceed { wait }
    }

    /// The pair's row after one more failure at `now`.
    pub fn after_failure(&self, old: Option<PairFailures>, now: i64) -> PairFailures {
        let l = &self.limits;
        let live = old.filter(|o| o.expires_at > now);
        let mut failures = live.map_or(0, |o| o.failures).saturating_add(1);
        let mut locked_until = live.and_then(|o| o.locked_until).filter(|t| *t > now);
        if l.lockout_after > 0 && failures >= l.lockout_after {
            locked_until = Some(now.saturating_add(ms(l.lockout)));
            // After the lock the next failure locks again at once, and the
            // next attempt waits the longest delay.
            failures = l.lockout_after - 1;
        }
        PairFailures {
            failures,
            last_failure: now,
            locked_until,
            expires_at: now
                .saturating_add(ms(l.forget_after))
                .max(locked_until.unwrap_or(0)),
        }
    }

    /// Read the pair's state, decide, and count the attempt in flight when
    /// admitted.
    fn admit(
        &self,
        store: &Store,
        ip: IpAddr,
        login: &str,
        now: i64,
    ) -> (Admission, Option<PairFailures>, Option<InFlight>) {
        let (address, login) = (address_key(ip), login_key(login));
        let unavailable = || Admission::Refuse {
            reason: Refusal::Unavailable,
            retry_in: Duration::from_secs(1),
        };
        // The stored failures are read while the attempts in flight are
        // held still: an attempt records its failure *before* it leaves the
        // map, so under the lock every failure is counted once — in the
        // store or in flight — never in neither (which let an 11th guess
        // through under 300 parallel ones).
        let Ok(mut map) = self.in_flight.lock() else {
            return (unavailable(), None, None);
        };
        let (pair, others_failing) = match store.login_failures_of(&address, &login, now) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "login guard: cannot read the login records");
                return (unavailable(), None, None);
            }
        };
        let key = (address, login);
        let in_flight = map.get(&key).copied().unwrap_or(0);
        let view = View {
            pair,
            in_flight,
            others_failing,
        };
        match self.decide(&view, now) {
            Admission::Proceed { wait } => {
                *map.entry(key.clone()).or_insert(0) += 1;
                let held = InFlight {
                    map: self.in_flight.clone(),
                    key,
                    released: self.released.clone(),
                };
                (Admission::Proceed { wait }, pair, Some(held))
            }
            Admission::Refuse {
                reason: Refusal::AddressThrottled,
                ..
            } => {
                drop(map);
                let next = store.next_expiry_of(&key.0, now).ok().flatten();
                let retry_in = until(next.unwrap_or(now), now).max(Duration::from_secs(1));
                let refuse = Admission::Refuse {
                    reason: Refusal::AddressThrottled,
                    retry_in,
                };
                (refuse, pair, None)
            }
            refuse => (refuse, pair, None),
        }
    }

    /// Check a password for `protocol` ("smtp", "imap"): wait or refuse as
    /// the penalty says, check it (Argon2id, [`authenticate`])
    /// and record the outcome. Every failure and refusal is logged with the
    /// address and the login, never the password, and counted on
    /// `/metrics`.
    pub async fn check(
        &self,
        store: &Store,
        protocol: &'static str,
        ip: IpAddr,
        login: &str,
        password: Secret<String>,
    ) -> Checked {
        let key = login_key(login);
        let verify = self.verify(store, &key, login, password);
        match self.judge(store, protocol, ip, login, verify).await {
            Judged::Passed(account) => Checked::Account(Box::new(account)),
            Judged::Wrong => Checked::Wrong,
            Judged::Refused(refused) => Checked::Refused(refused),
        }
    }

    /// The web console's admin password ([`CONSOLE_LOGIN`]) under the same
    /// penalty as SMTP and IMAP logins: `Ok(true)` admitted, `Ok(false)`
    /// wrong, `Err` refused unchecked.
    pub async fn check_console(
        &self,
        store: &Store,
        ip: IpAddr,
        password: Secret<String>,
    ) -> Result<bool, Refused> {
        let checking = store.clone();
        let verify = async move {
            tokio::task::spawn_blocking(move || {
                checking
                    .verify_console_password(&password)
                    .map(|ok| ok.then_some(()))
            })
            .await
        };
        match self
            .judge(store, "console", ip, CONSOLE_LOGIN, verify)
            .await
        {
            Judged::Passed(()) => Ok(true),
            Judged::Wrong => Ok(false),
            Judged::Refused(refused) => Err(refused),
        }
    }

    /// Wait or refuse as the penalty says, run `verify` and record the
    /// outcome; `verify` answers `Some` for a correct password.
    async fn judge<T>(
        &self,
        store: &Store,
        protocol: &'static str,
        ip: IpAddr,
        login: &str,
        verify: impl std::future::Future<
            Output = Result<Result<Option<T>, crate::store::StoreError>, tokio::task::JoinError>,
        >,
    ) -> Judged<T> {
        let metrics = crate::metrics::get();
        let (admission, pair, held) = self.admit_when_free(store, ip, login).await;
        match admission {
            Admission::Refuse { reason, retry_in } => {
                let refused = Refused {
                    reason,
                    retry_in,
                    login: login.to_string(),
                    address: ip.to_canonical(),
                };
                tracing::warn!(
                    %ip,
                    login,
                    reason = ?reason,
                    retry_in_s = seconds(retry_in),
                    "{protocol} authentication refused unchecked"
                );
                metrics.login_failure(protocol, "refused");
                return Judged::Refused(refused);
            }
            Admission::Proceed { wait } if !wait.is_zero() => {
                tracing::info!(%ip, login, wait_ms = wait.as_millis() as u64,
                    "{protocol} authentication delayed after failed logins");
                tokio::time::sleep(wait).await;
            }
            Admission::Proceed { .. } => {}
        }
        let (address, key) = (address_key(ip), login_key(login));
        let outcome = verify.await;
        let checked = match outcome {
            Ok(Ok(Some(passed))) => {
                if pair.is_some()
                    && let Err(e) = store.clear_login_failures(&address, &key)
                {
                    tracing::error!(error = %e, "login guard: cannot clear a login's failures");
                }
                Judged::Passed(passed)
            }
            Ok(Ok(None)) => {
                // A failure never leaves the login verified: the next
                // attempt with any password runs Argon2id and the
                // penalty (and a lockout) take it from here.
                self.verified.forget(&key);
                let now = now_ms();
                // A commit (fsync): off the async workers.
                let (store, limits) = (store.clone(), self.limits.clone());
                let recorded = tokio::task::spawn_blocking(move || {
                    let policy = LoginGuard::new(limits);
                    store.record_login_failure(&address, &key, now, |old| {
                        policy.after_failure(old, now)
                    })
                })
                .await;
                let locked = match recorded {
                    Ok(Ok(row)) => row.locked_until.is_some_and(|t| t > now),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "login guard: cannot record a failed login");
                        false
                    }
                    Err(_) => false,
                };
                tracing::warn!(%ip, login, locked, "{protocol} authentication failed");
                metrics.login_failure(protocol, "wrong");
                Judged::Wrong
            }
            Ok(Err(e)) => {
                self.verified.forget(&key);
                tracing::error!(error = %e, "{protocol} authentication: the store failed");
                Judged::Wrong
            }
            Err(_) => {
                self.verified.forget(&key);
                Judged::Wrong
            }
        };
        drop(held);
        checked
    }
}

impl LoginGuard {
    /// The password check of an admitted attempt: the verified-credentials
    /// cache ([`cache`]) when it holds this password on the account's
    /// current [`crate::store::login_failures::CredentialStamp`], else
    /// Argon2id ([`authenticate`]); a success of Argon2id is remembered
    /// only when the stamp did not change while it ran (a password changed
    /// meanwhile is never cached with the old password).
    async fn verify(
        &self,
        store: &Store,
        key: &str,
        login: &str,
        password: Secret<String>,
    ) -> Result<Result<Option<Account>, crate::store::StoreError>, tokio::task::JoinError> {
        if !self.verified.enabled() {
            return authenticate(store, login, password).await;
        }
        let metrics = crate::metrics::get();
        let stamp = store.credential_stamp(login).ok().flatten();
        let tagged = stamp.map(|s| {
            let tag = self.verified.tag(key, &s, &password);
            (s, tag)
        });
        if let Some((stamp, tag)) = &tagged
            && self.verified.hit(key, tag)
        {
            metrics.login_cache_hit();
            return Ok(store.account_by_id(stamp.account));
        }
        metrics.login_cache_miss();
        let outcome = authenticate(store, login, password).await;
        if let (Ok(Ok(Some(account))), Some((before, tag))) = (&outcome, tagged)
            && before.account == account.id
            && store.credential_stamp(login).ok().flatten().as_ref() == Some(&before)
        {
            self.verified.insert(key, tag);
        }
        outcome
    }
}

/// Password checks in progress at once, gateway-wide
/// (`login_limit.password_checks_at_once`; by default one per core).
static PASSWORD_CHECKS: std::sync::OnceLock<(usize, tokio::sync::Semaphore)> =
    std::sync::OnceLock::new();

/// Size the password-check pool: `n` at once, 0 = one per core. The first
/// call (the gateway's start) wins; returns the size in force.
pub fn password_checks_at_once(n: usize) -> usize {
    let (size, _) = PASSWORD_CHECKS.get_or_init(|| {
        let size = if n == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            n
        };
        (size, tokio::sync::Semaphore::new(size))
    });
    *size
}

/// [`Store::authenticate`] (SMTP AUTH, IMAP LOGIN/AUTHENTICATE) on the
/// blocking pool, at most [`password_checks_at_once`] at a time (N logins
/// arriving together are answered within ceil(N / that) × one check). Each Argon2id
/// verification holds 19 MiB and a core until it ends, and it runs for
/// wrong passwords and unknown logins too: unbounded, every client that
/// authenticates at the same moment — all of them reconnecting after a
/// restart, or anyone who can reach the port — added 19 MiB to the
/// gateway (32 SMTP clients reconnecting peaked at 600 MB), up to the
/// blocking pool's 512 threads. More at once would not finish sooner.
pub async fn authenticate(
    store: &Store,
    login: &str,
    password: Secret<String>,
) -> Result<Result<Option<Account>, crate::store::StoreError>, tokio::task::JoinError> {
    // The semaphore is never closed; without a permit, check anyway.
    password_checks_at_once(0);
    let _permit = match PASSWORD_CHECKS.get() {
        Some((_, pool)) => pool.acquire().await.ok(),
        None => None,
    };
    let store = store.clone();
    let login = login.to_string();
    tokio::task::spawn_blocking(move || store.authenticate(&login, &password)).await
}

#[path = "login_guard_cache.rs"]
pub mod cache;

#[cfg(test)]
#[path = "login_guard_tests.rs"]
mod tests;
