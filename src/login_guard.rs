//! Backoff after failed logins, shared by SMTP AUTH and IMAP LOGIN /
//! AUTHENTICATE (one [`LoginGuard`] per gateway, so guessing over IMAP
//! counts against SMTP too).
//!
//! Failures are counted per remote address and per login name (case
//! folded). The first `free_failures` of either are answered at once; after
//! that, every attempt from that address or for that login waits first —
//! `delay`, doubled per further failure, up to `max_delay` — and after
//! `lockout_after` failures attempts are refused without a password check
//! for `lockout`, with a reply that says how long to wait (RFC 4954 §6:
//! SMTP `454 4.7.0`; IMAP `NO [UNAVAILABLE]`, RFC 5530). A success resets
//! the login's count (not the address's: a valid account must not launder
//! guesses at other logins from the same place). Counts are forgotten
//! `forget_after` the last failure. Loopback addresses count like any
//! other. The clock is [`tokio::time::Instant`], so tests can pause it;
//! the `*_at` methods take it explicitly.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::secret::Secret;
use crate::store::{Account, Store};

/// Thresholds (`login_limit.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures answered without delay.
    pub free_failures: u32,
    /// Wait before the first slowed attempt; doubled per further failure.
    pub delay: Duration,
    pub max_delay: Duration,
    /// Failures after which attempts are refused; 0 = never.
    pub lockout_after: u32,
    /// How long attempts are refused.
    pub lockout: Duration,
    /// A count is forgotten this long after its last failure.
    pub forget_after: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            free_failures: 3,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            lockout_after: 10,
            lockout: Duration::from_secs(5 * 60),
            forget_after: Duration::from_secs(15 * 60),
        }
    }
}

/// The outcome of [`LoginGuard::check`].
pub enum Checked {
    Account(Box<Account>),
    /// Wrong login or password (or the store failed: logged).
    Wrong,
    /// Too many failures: refused unchecked for this long.
    Refused(Duration),
}

/// What to do with a login attempt before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Check the password after waiting this long (zero: at once).
    Proceed { wait: Duration },
    /// Refuse without checking; attempts resume after `retry_in`.
    Refuse { retry_in: Duration },
}

#[derive(Debug, Clone, Copy)]
struct Count {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// The failure counts of one gateway.
#[derive(Debug, Default)]
pub struct LoginGuard {
    limits: LoginLimits,
    counts: Mutex<HashMap<String, Count>>,
}

/// Entries kept at most; beyond it, expired ones are swept.
const MAX_ENTRIES: usize = 100_000;

fn login_key(login: &str) -> String {
    format!("login:{}", login.to_lowercase())
}

fn keys(ip: IpAddr, login: &str) -> [String; 2] {
    [format!("ip:{ip}"), login_key(login)]
}

/// `retry_in` rounded up to whole seconds, for replies.
pub fn seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl LoginGuard {
    pub fn new(limits: LoginLimits) -> LoginGuard {
        LoginGuard {
            limits,
            counts: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> &LoginLimits {
        &self.limits
    }

    pub fn admit(&self, ip: IpAddr, login: &str) -> Admission {
        self.admit_at(ip, login, Instant::now())
    }

    pub fn failure(&self, ip: IpAddr, login: &str) {
        self.failure_at(ip, login, Instant::now())
    }

    pub fn success(&self, login: &str) {
        if let Ok(mut map) = self.counts.lock() {
            map.remove(&login_key(login));
        }
    }

    /// Check a password for `protocol` ("smtp", "imap"): wait or refuse as
    /// the counts say, check it (Argon2id, [`crate::account::authenticate`])
    /// and count the outcome. Every failure and refusal is logged with the
    /// address and the login, never the password.
    pub async fn check(
        &self,
        store: &Store,
        protocol: &'static str,
        ip: IpAddr,
        login: &str,
        password: Secret<String>,
    ) -> Checked {
        match self.admit(ip, login) {
            Admission::Refuse { retry_in } => {
                tracing::warn!(
                    %ip,
                    login,
                    retry_in_s = seconds(retry_in),
                    "{protocol} authentication refused: too many failures"
                );
                return Checked::Refused(retry_in);
            }
            Admission::Proceed { wait } if !wait.is_zero() => tokio::time::sleep(wait).await,
            Admission::Proceed { .. } => {}
        }
        match crate::account::authenticate(store, login, password).await {
            Ok(Ok(Some(account))) => {
                self.success(login);
                Checked::Account(Box::new(account))
            }
            Ok(Ok(None)) => {
                self.failure(ip, login);
                tracing::warn!(%ip, login, "{protocol} authentication failed");
                Checked::Wrong
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "{protocol} authentication: the store failed");
                Checked::Wrong
            }
            Err(_) => Checked::Wrong,
        }
    }

    pub fn admit_at(&self, ip: IpAddr, login: &str, now: Instant) -> Admission {
        let Ok(map) = self.counts.lock() else {
            return Admission::Proceed {
                wait: Duration::ZERO,
            };
        };
        let live: Vec<Count> = keys(ip, login)
            .iter()
            .filter_map(|k| map.get(k).copied())
            .filter(|c| now.saturating_duration_since(c.last) < self.limits.forget_after)
            .collect();
        let locked = live
            .iter()
            .filter_map(|c| c.locked_until)
            .filter(|until| *until > now)
            .max();
        if let Some(until) = locked {
            return Admission::Refuse {
                retry_in: until - now,
            };
        }
        let worst = live.iter().map(|c| c.failures).max().unwrap_or(0);
        Admission::Proceed {
            wait: self.wait_after(worst),
        }
    }

    /// The wait before an attempt after `failures` failures.
    fn wait_after(&self, failures: u32) -> Duration {
        let Some(extra) = failures.checked_sub(self.limits.free_failures) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(extra.min(31)).unwrap_or(u32::MAX);
        self.limits
            .delay
            .saturating_mul(factor)
            .min(self.limits.max_delay)
    }

    pub fn failure_at(&self, ip: IpAddr, login: &str, now: Instant) {
        let Ok(mut map) = self.counts.lock() else {
            return;
        };
        if map.len() >= MAX_ENTRIES {
            let forget = self.limits.forget_after;
            map.retain(|_, c| {
                now.saturating_duration_since(c.last) < forget
                    || c.locked_until.is_some_and(|u| u > now)
            });
        }
        for key in keys(ip, login) {
            let count = map.entry(key).or_insert(Count {
                failures: 0,
                last: now,
                locked_until: None,
            });
            if now.saturating_duration_since(count.last) >= self.limits.forget_after {
                count.failures = 0;
            }
            count.failures = count.failures.saturating_add(1);
            count.last = now;
            if self.limits.lockout_after > 0 && count.failures >= self.limits.lockout_after {
                count.locked_until = Some(now + self.limits.lockout);
                // After the lockout the next failure locks again at once,
                // but the count restarts its doubling from the top.
                count.failures = self.limits.lockout_after - 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> LoginGuard {
        LoginGuard::new(LoginLimits {
            free_failures: 2,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(4),
            lockout_after: 6,
            lockout: Duration::from_secs(60),
            forget_after: Duration::from_secs(600),
        })
    }

    fn wait(a: Admission) -> Duration {
        match a {
            Admission::Proceed { wait } => wait,
            Admission::Refuse { .. } => panic!("refused: {a:?}"),
        }
    }

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const THERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn free_failures_then_doubling_capped_then_refusal() {
        let g = guard();
        let t = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..5 {
            waits.push(wait(g.admit_at(HERE, "a", t)).as_secs());
            g.failure_at(HERE, "a", t);
        }
        waits.push(wait(g.admit_at(HERE, "a", t)).as_secs());
        assert_eq!(waits, [0, 0, 1, 2, 4, 4]);
        g.failure_at(HERE, "a", t);
        assert_eq!(
            g.admit_at(HERE, "a", t + Duration::from_secs(15)),
            Admission::Refuse {
                retry_in: Duration::from_secs(45)
            }
        );
        // Same login from elsewhere, another login from here: refused too.
        assert!(matches!(
            g.admit_at(THERE, "A", t),
            Admission::Refuse { .. }
        ));
        assert!(matches!(g.admit_at(HERE, "b", t), Admission::Refuse { .. }));
        // Another login from elsewhere is untouched.
        assert_eq!(wait(g.admit_at(THERE, "b", t)), Duration::ZERO);
        // After the lockout: slowed, and one more failure locks again.
        let later = t + Duration::from_secs(61);
        assert_eq!(wait(g.admit_at(HERE, "a", later)), Duration::from_secs(4));
        g.failure_at(HERE, "a", later);
        assert!(matches!(
            g.admit_at(HERE, "a", later),
            Admission::Refuse { .. }
        ));
    }

    #[test]
    fn success_resets_the_login_not_the_address() {
        let g = guard();
        let t = Instant::now();
        for _ in 0..4 {
            g.failure_at(HERE, "a", t);
        }
        g.success("A");
        assert_eq!(wait(g.admit_at(THERE, "a", t)), Duration::ZERO);
        assert_eq!(wait(g.admit_at(HERE, "a", t)), Duration::from_secs(4));
    }

    #[test]
    fn counts_are_forgotten() {
        let g = guard();
        let t = Instant::now();
        for _ in 0..4 {
            g.failure_at(HERE, "a", t);
        }
        let later = t + Duration::from_secs(600);
        assert_eq!(wait(g.admit_at(HERE, "a", later)), Duration::ZERO);
        g.failure_at(HERE, "a", later);
        assert_eq!(wait(g.admit_at(HERE, "a", later)), Duration::ZERO);
    }

    #[test]
    fn no_lockout_when_zero() {
        let g = LoginGuard::new(LoginLimits {
            lockout_after: 0,
            ..LoginLimits::default()
        });
        let t = Instant::now();
        for _ in 0..100 {
            g.failure_at(HERE, "a", t);
        }
        assert_eq!(wait(g.admit_at(HERE, "a", t)), Duration::from_secs(30));
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(seconds(Duration::from_millis(1)), 1);
        assert_eq!(seconds(Duration::from_secs(3)), 3);
    }
}
