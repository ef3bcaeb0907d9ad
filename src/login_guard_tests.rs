//! The penalty policy by itself (times as numbers), then `check` against
//! an in-memory store with tokio's clock paused.

use super::*;
use crate::store::NewAccount;

fn guard() -> LoginGuard {
    LoginGuard::new(LoginLimits {
        free_failures: 2,
        delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(4),
        lockout_after: 6,
        lockout: Duration::from_secs(60),
        address_budget: 2,
        forget_after: Duration::from_secs(600),
        verified_for: Duration::from_secs(300),
    })
}

const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const S: i64 = 1000;

fn wait(a: Admission) -> Duration {
    match a {
        Admission::Proceed { wait } => wait,
        Admission::Refuse { .. } => panic!("refused: {a:?}"),
    }
}

fn view(pair: Option<PairFailures>) -> View {
    View {
        pair,
        ..View::default()
    }
}

#[test]
fn a_pair_waits_doubling_capped_then_is_locked() {
    let g = guard();
    let t = 1_000_000;
    let mut pair = None;
    let mut waits = Vec::new();
    for _ in 0..5 {
        waits.push(wait(g.decide(&view(pair), t)).as_secs());
        pair = Some(g.after_failure(pair, t));
    }
    waits.push(wait(g.decide(&view(pair), t)).as_secs());
    assert_eq!(waits, [0, 0, 1, 2, 4, 4]);
    pair = Some(g.after_failure(pair, t));
    assert_eq!(
        g.decide(&view(pair), t + 15 * S),
        Admission::Refuse {
            reason: Refusal::Locked,
            retry_in: Duration::from_secs(45)
        }
    );
    // After the lock: the longest wait, and one more failure locks again.
    let later = t + 61 * S;
    assert_eq!(wait(g.decide(&view(pair), later)), Duration::from_secs(4));
    pair = Some(g.after_failure(pair, later));
    assert!(matches!(
        g.decide(&view(pair), later),
        Admission::Refuse {
            reason: Refusal::Locked,
            ..
        }
    ));
    // Forgotten `forget_after` after the last failure (or the lock's end).
    let row = pair.unwrap();
    assert_eq!(row.expires_at, later + 600 * S);
    assert_eq!(g.after_failure(pair, row.expires_at).failures, 1);
}

#[test]
fn attempts_in_flight_count_toward_the_lock() {
    let g = guard();
    let t = 1_000_000;
    // Nothing failed yet, six attempts being checked: a seventh would
    // make more checks than the lock allows.
    let busy = View {
        in_flight: 6,
        ..View::default()
    };
    assert!(matches!(
        g.decide(&busy, t),
        Admission::Refuse {
            reason: Refusal::Busy,
            ..
        }
    ));
    // Four failures and one in flight: one more may go, after the wait
    // that five failures would bring.
    let mut pair = None;
    for _ in 0..4 {
        pair = Some(g.after_failure(pair, t));
    }
    let v = View {
        pair,
        in_flight: 1,
        others_failing: 0,
    };
    assert_eq!(wait(g.decide(&v, t)), Duration::from_secs(4));
    let v = View { in_flight: 2, ..v };
    assert!(matches!(g.decide(&v, t), Admission::Refuse { .. }));
}

#[test]
fn parallel_attempts_of_a_pair_that_never_failed_wait_for_nothing() {
    let g = guard();
    let t = 1_000_000;
    // Five attempts being checked, none failed yet: the sixth goes at once
    // (it is still counted against the lock, see the test above).
    let clean = View {
        in_flight: 5,
        ..View::default()
    };
    assert_eq!(wait(g.decide(&clean, t)), Duration::ZERO);
    // Once the pair has failed, attempts in flight count toward the wait.
    let failed = View {
        pair: Some(g.after_failure(Some(g.after_failure(Some(g.after_failure(None, t)), t)), t)),
        in_flight: 1,
        others_failing: 0,
    };
    assert!(wait(g.decide(&failed, t)) > Duration::ZERO);
}

#[test]
fn a_throttled_address_still_checks_logins_that_did_not_fail() {
    let g = guard();
    let t = 1_000_000;
    let failed = Some(g.after_failure(None, t));
    // Two other logins failed from here: the budget is spent.
    let clean = View {
        others_failing: 2,
        ..View::default()
    };
    assert_eq!(wait(g.decide(&clean, t)), Duration::ZERO);
    let own = View {
        pair: failed,
        ..clean
    };
    assert!(matches!(
        g.decide(&own, t),
        Admission::Refuse {
            reason: Refusal::AddressThrottled,
            ..
        }
    ));
    let racing = View {
        in_flight: 1,
        ..clean
    };
    assert!(matches!(g.decide(&racing, t), Admission::Refuse { .. }));
    // Within the budget, the same login is only slowed by its own count.
    let within = View {
        others_failing: 1,
        ..own
    };
    assert_eq!(wait(g.decide(&within, t)), Duration::ZERO);
}

#[test]
fn zero_disables_the_lock_and_the_budget() {
    let g = LoginGuard::new(LoginLimits {
        lockout_after: 0,
        address_budget: 0,
        ..LoginLimits::default()
    });
    let t = 1_000_000;
    let mut pair = None;
    for _ in 0..100 {
        pair = Some(g.after_failure(pair, t));
    }
    let v = View {
        pair,
        in_flight: 50,
        others_failing: 1000,
    };
    assert_eq!(wait(g.decide(&v, t)), Duration::from_secs(15));
}

#[test]
fn keys_fold_case_bound_length_and_unmap_ipv4() {
    assert_eq!(login_key("Bob@Example.COM"), "bob@example.com");
    assert_eq!(login_key(&"x".repeat(100_000)).len(), 320);
    let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
    assert_eq!(address_key(mapped), "127.0.0.1");
}

#[test]
fn seconds_round_up_and_sentences_say_the_fix() {
    assert_eq!(seconds(Duration::from_millis(1)), 1);
    assert_eq!(seconds(Duration::from_secs(3)), 3);
    let r = Refused {
        reason: Refusal::Locked,
        retry_in: Duration::from_millis(2500),
        login: "bob@example.com".into(),
        address: HERE,
    };
    let s = r.sentence();
    assert!(s.contains("3 more seconds"), "{s}");
    assert!(
        s.contains("graphgate accounts unlock bob@example.com"),
        "{s}"
    );
    let s = Refused {
        reason: Refusal::AddressThrottled,
        ..r
    }
    .sentence();
    assert!(s.contains("--address 127.0.0.1"), "{s}");
    // The login came from the client: it cannot end the reply line.
    let s = Refused {
        login: "x\r\n250 OK".into(),
        reason: Refusal::Locked,
        ..r
    }
    .sentence();
    assert!(!s.contains(['\r', '\n']), "{s}");
    assert!(s.contains("x??250?OK"), "{s}");
}

fn store() -> Store {
    let store = Store::open_in_memory().unwrap();
    for (login, password) in [("alice@example.com", "alice"), ("bob@example.com", "bob")] {
        store
            .add_account(&NewAccount::delegated(login, password))
            .unwrap();
    }
    store
}

async fn try_login(g: &LoginGuard, store: &Store, login: &str, password: &str) -> Checked {
    g.check(store, "smtp", HERE, login, Secret::new(password.into()))
        .await
}

/// The checks the store made (known and unknown logins), from /metrics'
/// counter. Other tests in this binary check passwords too, so callers
/// compare at least, never exactly.
fn checks(known: bool) -> u64 {
    crate::metrics::get().password_checks(known)
}

#[tokio::test(start_paused = true)]
async fn others_failures_do_not_refuse_a_correct_password() {
    let (g, store) = (guard(), store());
    for login in ["nosuch@example.com", "bob@example.com"] {
        for _ in 0..8 {
            let r = try_login(&g, &store, login, "guess").await;
            assert!(matches!(r, Checked::Wrong | Checked::Refused(_)));
        }
    }
    // bob is locked from here; alice did nothing wrong and passes without
    // a wait (the clock is paused: any sleep would move it).
    let before = tokio::time::Instant::now();
    let r = try_login(&g, &store, "ALICE@example.com", "alice").await;
    assert!(matches!(r, Checked::Account(_)));
    assert_eq!(tokio::time::Instant::now(), before);
    let Checked::Refused(r) = try_login(&g, &store, "bob@example.com", "bob").await else {
        panic!("bob's pair is locked")
    };
    assert_eq!(r.reason, Refusal::Locked);
    // The administrator lifts it; bob logs in and his count is gone.
    store
        .unlock_logins(Some("bob@example.com"), None, now_ms())
        .unwrap();
    assert!(matches!(
        try_login(&g, &store, "bob@example.com", "bob").await,
        Checked::Account(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_slowed_pair_waits_before_its_check() {
    let (g, store) = (guard(), store());
    for _ in 0..3 {
        let _ = try_login(&g, &store, "bob@example.com", "guess").await;
    }
    // Three failures, two free: the fourth attempt waits 2 s first — even
    // with the right password (its own pair failed) — and then clears it.
    let before = tokio::time::Instant::now();
    assert!(matches!(
        try_login(&g, &store, "bob@example.com", "bob").await,
        Checked::Account(_)
    ));
    assert!(tokio::time::Instant::now() - before >= Duration::from_secs(2));
    let before = tokio::time::Instant::now();
    let _ = try_login(&g, &store, "bob@example.com", "guess").await;
    assert_eq!(tokio::time::Instant::now(), before);
}

#[tokio::test]
async fn an_unknown_login_costs_a_verification() {
    let (g, store) = (guard(), store());
    let unknown = checks(false);
    let known = checks(true);
    assert!(matches!(
        try_login(&g, &store, "nosuch@example.com", "x").await,
        Checked::Wrong
    ));
    assert!(checks(false) > unknown);
    assert!(matches!(
        try_login(&g, &store, "bob@example.com", "x").await,
        Checked::Wrong
    ));
    assert!(checks(true) > known);
}
