//! Server process samples (`/proc/<pid>/status`, `/proc/<pid>/stat`) and this process's fd limit.
//!
//! Parsing is pure; [`sample`] and [`open_files_limit`] do the reading.

use serde::Serialize;

/// Clock ticks per second of `utime`/`stime` in `/proc/<pid>/stat` (`USER_HZ`).
///
/// Linux reports these in `USER_HZ`, which is 100 on every mainstream architecture regardless of the
/// kernel's `CONFIG_HZ`; reading `sysconf(_SC_CLK_TCK)` would need libc for no practical gain.
pub const DEFAULT_CLOCK_TICKS_PER_SEC: u64 = 100;

/// One sample of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProcSample {
    /// Resident set size, kB (`VmRSS`).
    pub rss_kb: u64,
    /// Peak resident set size, kB (`VmHWM`).
    pub hwm_kb: u64,
    /// Anonymous resident memory, kB (`RssAnon`: heap and stacks).
    pub rss_anon_kb: u64,
    /// Resident shared memory, kB (`RssShmem`: e.g. nchan's shared-memory store).
    pub rss_shmem_kb: u64,
    /// Threads.
    pub threads: u64,
    /// User CPU time, clock ticks.
    pub utime_ticks: u64,
    /// System CPU time, clock ticks.
    pub stime_ticks: u64,
}

impl ProcSample {
    /// User + system CPU seconds.
    pub fn cpu_seconds(&self) -> f64 {
        (self.utime_ticks + self.stime_ticks) as f64 / DEFAULT_CLOCK_TICKS_PER_SEC as f64
    }

    /// The sum of two samples (several processes of one server).
    pub fn plus(self, o: ProcSample) -> ProcSample {
        ProcSample {
            rss_kb: self.rss_kb + o.rss_kb,
            hwm_kb: self.hwm_kb + o.hwm_kb,
            rss_anon_kb: self.rss_anon_kb + o.rss_anon_kb,
            rss_shmem_kb: self.rss_shmem_kb + o.rss_shmem_kb,
            threads: self.threads + o.threads,
            utime_ticks: self.utime_ticks + o.utime_ticks,
            stime_ticks: self.stime_ticks + o.stime_ticks,
        }
    }
}

/// Reads `VmRSS`, `VmHWM` and `Threads` from the text of `/proc/<pid>/status`.
pub fn parse_status(text: &str, into: &mut ProcSample) {
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(v) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "VmRSS:" => into.rss_kb = v,
            "VmHWM:" => into.hwm_kb = v,
            "RssAnon:" => into.rss_anon_kb = v,
            "RssShmem:" => into.rss_shmem_kb = v,
            "Threads:" => into.threads = v,
            _ => {}
        }
    }
}

/// Reads `(utime, stime)` in ticks from the text of `/proc/<pid>/stat` (fields 14 and 15).
///
/// The command name (field 2) may hold spaces and parentheses, so fields are counted after the last
/// `)`.
pub fn parse_stat(text: &str) -> Option<(u64, u64)> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After ")": field 3 (state) is index 0, so field 14 is index 11.
    let utime = fields.nth(11)?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// Reads the soft "Max open files" limit from the text of `/proc/self/limits`.
pub fn parse_open_files_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Samples process `pid`; `None` when it cannot be read.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let mut s = ProcSample::default();
    parse_status(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        &mut s,
    );
    let (u, st) = parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    s.utime_ticks = u;
    s.stime_ticks = st;
    Some(s)
}

/// Samples every process of `pids` and adds them up; `None` when `pids` is empty or one cannot
/// be read.
pub fn sample_all(pids: &[u32]) -> Option<ProcSample> {
    pids.iter()
        .try_fold(None, |acc: Option<ProcSample>, &pid| {
            let s = sample(pid)?;
            Some(Some(acc.map_or(s, |a| a.plus(s))))
        })
        .flatten()
}

/// This process's soft open-files limit, when readable.
pub fn open_files_limit() -> Option<u64> {
    parse_open_files_limit(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let mut s = ProcSample::default();
        parse_status(
            "Name:\tx\nVmHWM:\t    2196 kB\nVmRSS:\t  2000 kB\nRssAnon:\t 1500 kB\nRssShmem:\t 4 kB\nThreads:\t3\nbad\n",
            &mut s,
        );
        assert_eq!((s.rss_kb, s.hwm_kb, s.threads), (2000, 2196, 3));
        assert_eq!((s.rss_anon_kb, s.rss_shmem_kb), (1500, 4));
        let stat = "21303 (a b) c)) R 21298 21298 8121 0 -1 4194304 102 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat(stat), Some((250, 50)));
        assert_eq!(parse_stat("1 (x) R 2"), None);
        assert_eq!(parse_stat("no paren"), None);
        s.utime_ticks = 250;
        s.stime_ticks = 50;
        assert!((s.cpu_seconds() - 3.0).abs() < 1e-9);
    }

    #[test]
    fn parses_limits() {
        let t = "Limit   Soft Limit   Hard Limit   Units\nMax processes   96365   96365   processes\n\
                 Max open files            20000                20000                files\n";
        assert_eq!(parse_open_files_limit(t), Some(20000));
        assert_eq!(
            parse_open_files_limit("Max open files unlimited unlimited files"),
            None
        );
        assert!(sample(std::process::id()).is_some_and(|s| s.rss_kb > 0));
        let me = std::process::id();
        let one = sample_all(&[me]).expect("self");
        let two = sample_all(&[me, me]).expect("self twice");
        assert!(one.threads >= 1 && two.threads >= 2);
        assert_eq!(sample_all(&[]), None);
        assert_eq!(sample_all(&[me, u32::MAX]), None);
        assert!(open_files_limit().is_some());
    }
}
