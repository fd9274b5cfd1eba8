//! Login abuse limits: attempts per source address, failures per phone.
//!
//! - Per source address: at most `login_attempts_per_address` (default 30)
//!   login or register requests per minute.
//! - Per phone: at most `login_failures_per_phone` (default 5) failed logins
//!   per 15 minutes; after that every login for that phone — right
//!   password or not — gets `rate_limited` until the window ends. Unknown
//!   phones are counted the same way, so the limit tells nothing about
//!   whether a phone is registered.
//!
//! Fixed windows, in memory, per node. Memory is bounded: past
//! `MAX_ENTRIES` keys the expired windows are dropped, and if that is not
//! enough the new key is refused (`rate_limited`) rather than remembered.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const ADDRESS_WINDOW: Duration = Duration::from_secs(60);
pub const PHONE_WINDOW: Duration = Duration::from_secs(15 * 60);
const MAX_ENTRIES: usize = 100_000;

struct Window {
    started: Instant,
    count: u32,
}

pub(crate) struct Counter<K> {
    /// A std mutex: held for one map operation, never across an await.
    map: Mutex<HashMap<K, Window>>,
    window: Duration,
    max: u32,
}

impl<K: Hash + Eq + Clone> Counter<K> {
    pub(crate) fn new(window: Duration, max: u32) -> Self {
        Counter { map: Mutex::new(HashMap::new()), window, max }
    }

    /// Whether `key` is below its limit now.
    fn allows(&self, key: &K, now: Instant) -> bool {
        match self.map.lock().unwrap().get(key) {
            Some(w) if now.duration_since(w.started) < self.window => w.count < self.max,
            _ => true,
        }
    }

    /// Counts one; false if that goes over the limit (or memory is full).
    pub(crate) fn count(&self, key: &K, now: Instant) -> bool {
        let mut map = self.map.lock().unwrap();
        if map.len() >= MAX_ENTRIES && !map.contains_key(key) {
            let window = self.window;
            map.retain(|_, w| now.duration_since(w.started) < window);
            if map.len() >= MAX_ENTRIES {
                return false;
            }
        }
        let w = map.entry(key.clone()).or_insert(Window { started: now, count: 0 });
        if now.duration_since(w.started) >= self.window {
            *w = Window { started: now, count: 0 };
        }
        w.count += 1;
        w.count <= self.max
    }

    fn reset(&self, key: &K) {
        self.map.lock().unwrap().remove(key);
    }
}

pub struct LoginLimiter {
    addresses: Counter<IpAddr>,
    phones: Counter<String>,
}

impl LoginLimiter {
    pub fn new(failures_per_phone: u32, attempts_per_address: u32) -> LoginLimiter {
        LoginLimiter {
            addresses: Counter::new(ADDRESS_WINDOW, attempts_per_address),
            phones: Counter::new(PHONE_WINDOW, failures_per_phone),
        }
    }

    /// Counts an attempt from `address` for `phone`; false = refuse it with
    /// `rate_limited` without checking the password.
    pub fn attempt(&self, address: IpAddr, phone: &str) -> bool {
        let now = Instant::now();
        let address_ok = self.addresses.count(&address, now);
        address_ok && self.phones.allows(&phone.to_string(), now)
    }

    /// Counts a register (or other unauthenticated, costly) request.
    pub fn request(&self, address: IpAddr) -> bool {
        self.addresses.count(&address, Instant::now())
    }

    pub fn failed(&self, phone: &str) {
        self.phones.count(&phone.to_string(), Instant::now());
    }

    pub fn succeeded(&self, phone: &str) {
        self.phones.reset(&phone.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_locks_after_failures_and_address_after_attempts() {
        let limiter = LoginLimiter::new(2, 5);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(limiter.attempt(ip, "1"));
        limiter.failed("1");
        assert!(limiter.attempt(ip, "1"));
        limiter.failed("1");
        assert!(!limiter.attempt(ip, "1"), "two failures lock the phone");
        assert!(limiter.attempt(ip, "2"), "another phone is not locked");
        assert!(limiter.attempt(ip, "2"), "the fifth attempt from one address is allowed");
        assert!(!limiter.attempt(ip, "2"), "the sixth is refused");
        assert!(limiter.attempt("10.0.0.2".parse().unwrap(), "3"));
    }
}
