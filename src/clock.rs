//! The server's clock for event times and deadlines: the wall clock plus an
//! offset that only the test endpoint (`--test-clock`) moves forward. One
//! clock for both, so that a test which crosses a deadline or a spike
//! window without sleeping sees event times and deadlines move together.
//! Token expiry and login limits keep the plain wall clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::SystemTime;

use protocol::Millis;

use crate::auth::unix_millis;

/// Milliseconds added to the wall clock; zero unless a test moved it.
static OFFSET: AtomicI64 = AtomicI64::new(0);

/// Now, in ms since the epoch, as events and deadlines see it.
pub fn now() -> Millis {
    unix_millis(SystemTime::now()) + OFFSET.load(Ordering::Relaxed)
}

/// Moves the clock forward (tests only; a negative amount is ignored, so
/// event times never go backwards).
pub fn advance(ms: i64) {
    OFFSET.fetch_add(ms.max(0), Ordering::Relaxed);
}
