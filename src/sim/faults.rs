//! Fault injection for the simulator: latency, 429/503 rates, connection
//! resets, revoked refresh tokens and expired client secrets, settable at
//! start-up (`SimConfig::initial_faults`) and at run time (`/_sim/faults`).
//!
//! Randomness comes from a seedable RNG (`SimConfig::fault_seed`) so that a
//! test with a fixed seed sees the same sequence of outcomes. The throttling
//! answers follow Graph's "Microsoft Graph throttling guidance" (429
//! `TooManyRequests` + `Retry-After`) and 503 `serviceNotAvailable`.

use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The fault settings, as `/_sim/faults` reads and writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    pub latency_ms: u64,
    pub throttle_rate: f64,
    pub retry_after_s: u64,
    pub error_rate: f64,
    pub reset_rate: f64,
    pub revoke_refresh_tokens: bool,
    pub expire_client_secrets: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            throttle_rate: 0.0,
            retry_after_s: 1,
            error_rate: 0.0,
            reset_rate: 0.0,
            revoke_refresh_tokens: false,
            expire_client_secrets: false,
        }
    }
}

/// A partial update of [`Faults`] (every field optional), merged into the
/// current settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsUpdate {
    pub latency_ms: Option<u64>,
    pub throttle_rate: Option<f64>,
    pub retry_after_s: Option<u64>,
    pub error_rate: Option<f64>,
    pub reset_rate: Option<f64>,
    pub revoke_refresh_tokens: Option<bool>,
    pub expire_client_secrets: Option<bool>,
}

/// The outcome the fault layer draws for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// 429 with `Retry-After` seconds.
    Throttle(u64),
    /// 503 with `Retry-After` seconds.
    Unavailable(u64),
    /// Drop the connection without an answer.
    Reset,
}

/// Longest latency a fault may add (a bound on a control input).
const MAX_LATENCY_MS: u64 = 60_000;

pub struct FaultState {
    current: Mutex<Faults>,
    rng: Mutex<StdRng>,
}

impl FaultState {
    pub fn new(initial: Faults, seed: Option<u64>) -> FaultState {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        FaultState {
            current: Mutex::new(sanitize(initial)),
            rng: Mutex::new(rng),
        }
    }

    pub fn get(&self) -> Faults {
        self.current.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Merge `update`; returns the new settings.
    pub fn merge(&self, update: FaultsUpdate) -> Faults {
        let Ok(mut current) = self.current.lock() else {
            return Faults::default();
        };
        let mut next = current.clone();
        if let Some(v) = update.latency_ms {
            next.latency_ms = v;
        }
        if let Some(v) = update.throttle_rate {
            next.throttle_rate = v;
        }
        if let Some(v) = update.retry_after_s {
            next.retry_after_s = v;
        }
        if let Some(v) = update.error_rate {
            next.error_rate = v;
        }
        if let Some(v) = update.reset_rate {
            next.reset_rate = v;
        }
        if let Some(v) = update.revoke_refresh_tokens {
            next.revoke_refresh_tokens = v;
        }
        if let Some(v) = update.expire_client_secrets {
            next.expire_client_secrets = v;
        }
        *current = sanitize(next);
        current.clone()
    }

    pub fn clear(&self) {
        if let Ok(mut current) = self.current.lock() {
            *current = Faults::default();
        }
    }

    /// Draw the outcome of one request (reset, then throttle, then error).
    pub fn draw(&self) -> Outcome {
        let faults = self.get();
        if faults.reset_rate <= 0.0 && faults.throttle_rate <= 0.0 && faults.error_rate <= 0.0 {
            return Outcome::Pass;
        }
        let roll: f64 = match self.rng.lock() {
            Ok(mut rng) => rng.random::<f64>(),
            Err(_) => return Outcome::Pass,
        };
        if roll < faults.reset_rate {
            Outcome::Reset
        } else if roll < faults.reset_rate + faults.throttle_rate {
            Outcome::Throttle(faults.retry_after_s)
        } else if roll < faults.reset_rate + faults.throttle_rate + faults.error_rate {
            Outcome::Unavailable(faults.retry_after_s)
        } else {
            Outcome::Pass
        }
    }

    pub fn latency(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.get().latency_ms)
    }
}

fn sanitize(mut f: Faults) -> Faults {
    let rate = |r: f64| {
        if r.is_finite() {
            r.clamp(0.0, 1.0)
        } else {
            0.0
        }
    };
    f.throttle_rate = rate(f.throttle_rate);
    f.error_rate = rate(f.error_rate);
    f.reset_rate = rate(f.reset_rate);
    f.latency_ms = f.latency_ms.min(MAX_LATENCY_MS);
    f.retry_after_s = f.retry_after_s.min(3600);
    f
}
