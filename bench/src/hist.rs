//! HDR histograms of latencies in µs, and their (value, count) wire form.

use hdrhistogram::Histogram;
use serde::Serialize;

/// 1 µs to one hour, three significant digits.
pub fn new() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// The recorded buckets as (value, count) pairs, for a report line.
pub fn to_pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
}

pub fn add_pairs(h: &mut Histogram<u64>, pairs: &[(u64, u64)]) {
    for &(v, n) in pairs {
        h.saturating_record_n(v.max(1), n);
    }
}

/// Percentiles in µs as reported.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

pub fn summary(h: &Histogram<u64>) -> Summary {
    if h.is_empty() {
        return Summary::default();
    }
    Summary {
        count: h.len(),
        p50_us: h.value_at_quantile(0.50),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_keeps_percentiles() {
        let mut h = new();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let mut back = new();
        add_pairs(&mut back, &to_pairs(&h));
        let (a, b) = (summary(&h), summary(&back));
        assert_eq!(a.count, b.count);
        assert_eq!(a.p50_us, b.p50_us);
        assert_eq!(a.p99_us, b.p99_us);
        assert_eq!(a.max_us, b.max_us);
    }
}
