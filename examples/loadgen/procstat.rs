//! CPU time of a set of processes, from /proc/PID/stat.
//!
//! utime and stime of a process cover all its threads, so a multi-threaded
//! proxy is one PID; a multi-process proxy (nginx master and workers) is
//! several, and the caller passes them all.

/// utime + stime of `pids`, in seconds. A process that is gone counts as
/// zero: its time is lost, so the caller should pass only long-lived ones.
pub fn cpu_seconds(pids: &[u32], clk_tck: u64) -> f64 {
    let ticks: u64 = pids
        .iter()
        .filter_map(|&pid| ticks(&format!("/proc/{pid}/stat")))
        .sum();
    ticks as f64 / clk_tck.max(1) as f64
}

/// This process's own CPU seconds.
pub fn own_cpu_seconds(clk_tck: u64) -> f64 {
    ticks("/proc/self/stat").unwrap_or(0) as f64 / clk_tck.max(1) as f64
}

/// utime + stime in clock ticks. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last `)`.
fn ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state(3) ppid(4) ... utime(14) stime(15).
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_stat_parses() {
        assert!(super::ticks("/proc/self/stat").is_some());
    }
}
