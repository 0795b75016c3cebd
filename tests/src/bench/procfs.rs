//! What `/proc` tells about processes: peak memory, executables, environments, descendants.
//! Linux only, as the benchmarks are.

use std::path::PathBuf;

use anyhow::Context;

/// Resets the peak RSS (`VmHWM`) of `pid` to its current RSS (`echo 5 > clear_refs`).
pub fn reset_peak_rss(pid: u32) -> anyhow::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("resetting the peak RSS of process {pid} (/proc/{pid}/clear_refs)"))
}

/// The peak RSS (`VmHWM`) of `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no VmHWM in /proc/{pid}/status"))
}

pub fn is_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Every process id, as far as `/proc` lists them.
fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The executable of `pid`.
pub fn exe(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The processes whose environment has an entry starting with `entry_prefix` (`VAR=value…`).
pub fn with_environment(entry_prefix: &str) -> Vec<u32> {
    let me = std::process::id();
    pids()
        .into_iter()
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|b| *b == 0)
                    .any(|entry| entry.starts_with(entry_prefix.as_bytes()))
            })
        })
        .collect()
}

/// `root` and its descendants.
pub fn tree(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = pids()
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The fields after the command name (which may hold spaces): state, ppid, …
            let after = &stat[stat.rfind(')')? + 2..];
            let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        i += 1;
    }
    found
}

/// Sends `signal` (a name: TERM, KILL) to each of `pids` that still runs.
pub fn signal(pids: &[u32], signal: &str) {
    let alive: Vec<String> = pids.iter().filter(|p| is_alive(**p)).map(u32::to_string).collect();
    if !alive.is_empty() {
        let _ = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .args(&alive)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// SIGTERM to `pids`, then SIGKILL to what is left after `grace`.
pub fn stop(pids: &[u32], grace: std::time::Duration) {
    signal(pids, "TERM");
    let deadline = std::time::Instant::now() + grace;
    while pids.iter().any(|p| is_alive(*p) && !is_zombie(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    signal(pids, "KILL");
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.get(stat.rfind(')')? + 2..).map(|s| s.starts_with('Z')))
        .unwrap_or(true)
}
