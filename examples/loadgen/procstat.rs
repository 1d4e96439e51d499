//! CPU time of a set of processes, from /proc/PID/stat.
//!
//! utime and stime of a process cover all its threads, so a multi-threaded
//! proxy is one PID; a multi-process proxy (nginx master and workers) is
//! several, and the caller passes them all.

/// CPU seconds spent in user space and in the kernel.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
pub struct Cpu {
    pub user: f64,
    pub sys: f64,
}

impl Cpu {
    pub fn total(self) -> f64 {
        self.user + self.sys
    }
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, rhs: Cpu) -> Cpu {
        Cpu {
            user: self.user - rhs.user,
            sys: self.sys - rhs.sys,
        }
    }
}

/// utime and stime of `pids`. A process that is gone counts as zero: its
/// time is lost, so the caller should pass only long-lived ones.
pub fn cpu(pids: &[u32], clk_tck: u64) -> Cpu {
    let (user, sys) = pids
        .iter()
        .filter_map(|&pid| ticks(&format!("/proc/{pid}/stat")))
        .fold((0, 0), |(u, s), (du, ds)| (u + du, s + ds));
    let tck = clk_tck.max(1) as f64;
    Cpu {
        user: user as f64 / tck,
        sys: sys as f64 / tck,
    }
}

/// CPU seconds every core of the machine spent busy (user, nice, system,
/// irq, softirq and steal from the `cpu` line of /proc/stat): with the
/// load generator, backends and proxy on the same cores, this says whether
/// a transfer was bound by the machine's CPU rather than by any one of them.
pub fn machine_busy_seconds(clk_tck: u64) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest is in user).
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    Some(busy as f64 / clk_tck.max(1) as f64)
}

/// This process's own CPU seconds.
pub fn own_cpu_seconds(clk_tck: u64) -> f64 {
    ticks("/proc/self/stat").map_or(0, |(u, s)| u + s) as f64 / clk_tck.max(1) as f64
}

/// Resident bytes of `pids` together (VmRSS from /proc/PID/status). A
/// process that is gone counts as zero.
pub fn rss_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|&pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        })
        .sum()
}

/// (utime, stime) in clock ticks. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last `)`.
fn ticks(path: &str) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state(3) ppid(4) ... utime(14) stime(15).
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_stat_parses() {
        assert!(super::ticks("/proc/self/stat").is_some());
    }

    #[test]
    fn machine_busy_time_grows_while_this_thread_spins() {
        let tck = 100;
        let before = super::machine_busy_seconds(tck).expect("/proc/stat readable");
        let until = std::time::Instant::now() + std::time::Duration::from_millis(300);
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = super::machine_busy_seconds(tck).unwrap();
        assert!(after - before >= 0.1, "busy {before} -> {after}");
    }

    #[test]
    fn own_rss_is_read() {
        assert!(super::rss_bytes(&[std::process::id()]) > 0);
    }
}
