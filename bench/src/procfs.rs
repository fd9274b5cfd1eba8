//! Server-side measures read from `/proc`: CPU time split user/system
//! (`/proc/PID/stat`) and resident memory (`/proc/PID/status`). Linux only,
//! like the machine the figures are for.

use anyhow::{Context, Result};

/// One reading of a process's CPU and memory.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// User-mode CPU time, µs (all threads).
    pub user_us: u64,
    /// Kernel-mode CPU time, µs (all threads).
    pub sys_us: u64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
}

impl Sample {
    /// CPU spent between `self` and a later sample, as (user µs, system µs).
    pub fn cpu_since(&self, earlier: &Sample) -> (u64, u64) {
        (self.user_us.saturating_sub(earlier.user_us), self.sys_us.saturating_sub(earlier.sys_us))
    }
}

/// Clock ticks per second of `utime`/`stime`. 100 on every Linux this bench
/// targets (USER_HZ is fixed by the kernel ABI on x86-64 and arm64).
const TICKS_PER_SEC: u64 = 100;

/// Read CPU and RSS of `pid` (`"self"` works too).
pub fn sample(pid: &str) -> Result<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let (user_us, sys_us) = parse_stat(&stat).context("parsing /proc/PID/stat")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss_kib = parse_rss(&status).unwrap_or(0);
    Ok(Sample { user_us, sys_us, rss_kib })
}

/// (utime, stime) in µs from the text of `/proc/PID/stat`. The command name
/// may contain spaces and parentheses, so fields are counted after the last
/// `)`: state is field 3, utime field 14, stime field 15.
fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let us = 1_000_000 / TICKS_PER_SEC;
    Some((utime * us, stime * us))
}

fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Time the threads of `pid` spent runnable but waiting for a core, µs
/// (sum of the second field of `/proc/PID/task/*/schedstat`). On a shared
/// machine this is how long other work kept the server from running.
pub fn run_delay_us(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum::<u64>()
        / 1000
}

/// Whole-machine CPU from the `cpu` line of `/proc/stat`: (busy µs, all µs)
/// summed over every core, so that time used by processes outside the run
/// (another build, a browser test) can be reported next to the figures.
pub fn machine_cpu() -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().find(|l| l.starts_with("cpu ")).context("no cpu line in /proc/stat")?;
    let v: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().sum();
    // idle and iowait are the 4th and 5th columns.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let us = 1_000_000 / TICKS_PER_SEC;
    Ok(((total - idle) * us, total * us))
}

/// The machine, for the results table: cores, CPU model, memory.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kib| kib as f64 / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    format!("{cores} cores, {model}, {mem_gib:.1} GiB RAM")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat =
            "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1 1000 200";
        assert_eq!(parse_stat(stat), Some((2_500_000, 750_000)));
    }

    #[test]
    fn rss_is_read_in_kib() {
        let status = "Name:\tx\nVmPeak:\t 100 kB\nVmRSS:\t    5120 kB\n";
        assert_eq!(parse_rss(status), Some(5120));
    }

    #[test]
    fn run_delay_of_self_is_readable() {
        // Zero is possible on an idle machine; the call must not fail.
        let _ = run_delay_us("self");
    }

    #[test]
    fn machine_cpu_is_read() {
        let (busy, total) = machine_cpu().unwrap();
        assert!(total > 0 && busy <= total);
    }

    #[test]
    fn own_process_can_be_sampled() {
        let s = sample("self").unwrap();
        assert!(s.rss_kib > 0);
    }
}
