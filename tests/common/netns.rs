//! Linux network namespaces for tests, the one place that names, creates, enters, runs commands
//! in and deletes them (used by the WAN test bed, `wan.rs`, and the partition test).
//!
//! Every namespace a test creates is named `dvt<PID>-<SEQ>-<ROLE>`: the test process's PID, a
//! per-process sequence number and a role. Dropping a [`Netns`] kills (SIGKILL, by PID) the
//! processes still inside it and deletes it. A test that crashed cannot do that, so creating a
//! namespace first sweeps the leftovers: namespaces whose name has the `dvt` prefix and whose
//! owner PID is no longer running ([`sweep_stale`]). Nothing else is ever deleted.
//!
//! Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), iproute2 and nftables; without them
//! [`Netns::create`] panics naming what is missing (never a silent pass).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::process::{bin, hermetic, Proc};

/// Prefix of every namespace name these tests create.
pub const PREFIX: &str = "dvt";

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh name prefix of this process, `dvt<PID>-<SEQ>-`: names made from it are unique
/// among this process's namespaces and carry its PID.
pub fn unique_prefix() -> String {
    format!(
        "{PREFIX}{}-{}-",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// The owner PID of a namespace named by [`unique_prefix`]; `None` for any other name.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// The names in `ip netns list` output (`NAME` or `NAME (id: N)` per line).
pub fn list_names(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

/// The namespaces of `listing` that the sweep deletes: ours (our prefix and format) whose owner
/// is not alive, with that owner's PID.
pub fn stale(listing: &str, alive: impl Fn(u32) -> bool) -> Vec<(&str, u32)> {
    list_names(listing)
        .into_iter()
        .filter_map(|name| Some((name, owner_pid(name)?)))
        .filter(|(_, pid)| !alive(*pid))
        .collect()
}

/// Whether process `pid` exists.
pub fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Runs a command to completion; stdout, or a description of the failure.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// [`run`], panicking with the failure.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    run(program, args).unwrap_or_else(|e| panic!("network namespace set-up: {e}"))
}

/// Runs `nft -f -` inside namespace `ns` with `script` on stdin.
pub fn nft_script(ns: &str, script: &str) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("nft: no stdin")?
        .write_all(script.as_bytes())
        .map_err(|e| format!("nft stdin: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft in {ns} failed: {}\n{script}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Kills (SIGKILL, by PID) every process inside namespace `ns` and deletes it.
pub fn delete_namespace(ns: &str) -> Result<(), String> {
    for _ in 0..50 {
        let pids = run("ip", &["netns", "pids", ns]).unwrap_or_default();
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = run("kill", &["-KILL", pid]);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    run("ip", &["netns", "del", ns]).map(drop)
}

/// Deletes the namespaces left by earlier runs: [`stale`] ones, and only those.
pub fn sweep_stale() {
    let Ok(listing) = run("ip", &["netns", "list"]) else {
        return;
    };
    for (name, pid) in stale(&listing, pid_alive) {
        eprintln!("deleting network namespace {name}, left by process {pid} (gone)");
        if let Err(e) = delete_namespace(name) {
            eprintln!("  {e}");
        }
    }
}

/// Panics naming the missing capability unless the test runs as root and every `tools`
/// program is installed.
pub fn require(what: &str, tools: &[&str]) {
    let euid = nix::unistd::geteuid();
    assert!(
        euid.is_root(),
        "{what} needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN to create network namespaces); \
         running as uid {euid}"
    );
    for tool in tools {
        assert!(
            run("sh", &["-c", &format!("command -v {tool}")]).is_ok(),
            "{what} needs `{tool}` (packages iproute2, nftables, iptables)"
        );
    }
}

/// Moves the calling thread into the network namespace at `path` (`/run/netns/NAME`): sockets
/// it creates afterwards live there.
pub fn enter_namespace(path: &str) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("setns {path}: {e}"))
}

/// A network namespace of this test, deleted (with whatever still runs inside) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A namespace named `<prefix><role>` ([`unique_prefix`]) with loopback up. Does not sweep
    /// or check tools: see [`Netns::create`].
    pub fn add(prefix: &str, role: &str) -> Result<Self, String> {
        let name = format!("{prefix}{role}");
        debug_assert_eq!(owner_pid(&name), Some(std::process::id()));
        run("ip", &["netns", "add", &name])
            .map_err(|e| format!("network namespaces (`ip netns add`): {e}"))?;
        let ns = Self { name };
        run("ip", &["-n", &ns.name, "link", "set", "lo", "up"])
            .map_err(|e| format!("loopback in {}: {e}", ns.name))?;
        Ok(ns)
    }

    /// A private namespace for one test, with loopback up and nftables working inside it;
    /// deletes the leftovers of crashed runs first.
    pub fn create() -> Self {
        require("this test", &["ip", "nft"]);
        sweep_stale();
        let ns = Self::add(&unique_prefix(), "ns")
            .unwrap_or_else(|e| panic!("this test needs a private network namespace: {e}"));
        if let Err(e) = ns.nft("list ruleset") {
            panic!("this test needs nftables (`nft`) inside the namespace: {e}");
        }
        ns
    }

    /// `/run/netns/NAME`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `PROGRAM` run inside the namespace (`ip netns exec NAME PROGRAM`, which execs it: the
    /// child's PID is the program's).
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// `dvsigner ARGS` inside the namespace with the hermetic environment of
    /// `process::command`, started with stdout and stderr to `log`; the returned handle kills it
    /// by PID on drop. `configure` may adjust the command (group, environment) before it starts.
    pub fn spawn_dvsigner(
        &self,
        name: &str,
        args: &[String],
        log: &Path,
        configure: impl FnOnce(&mut Command),
    ) -> Proc {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("clone");
        let mut cmd = self.command(&bin());
        hermetic(&mut cmd);
        cmd.args(args).stdout(out).stderr(err);
        configure(&mut cmd);
        Proc {
            child: cmd
                .spawn()
                .unwrap_or_else(|e| panic!("spawn dvsigner in {}: {e}", self.name)),
            name: name.to_owned(),
            log: log.to_owned(),
        }
    }

    /// Runs an nft script (one command per line) inside the namespace.
    pub fn nft(&self, script: &str) -> Result<(), String> {
        nft_script(&self.name, script)
    }

    /// Moves the calling thread into the namespace (sockets it creates afterwards live there).
    pub fn enter_current_thread(&self) {
        enter_namespace(&self.path()).unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = delete_namespace(&self.name) {
            eprintln!("deleting network namespace {}: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_carry_this_process_and_parse_back() {
        let a = super::unique_prefix();
        let b = super::unique_prefix();
        assert_ne!(a, b);
        for p in [&a, &b] {
            assert_eq!(
                super::owner_pid(&format!("{p}node-a")),
                Some(std::process::id())
            );
            assert_eq!(
                super::owner_pid(&format!("{p}br")),
                Some(std::process::id())
            );
        }
    }

    #[test]
    fn only_our_prefix_and_format_have_an_owner() {
        assert_eq!(super::owner_pid("dvt123-0-node-a"), Some(123));
        assert_eq!(super::owner_pid("dvt7-12-ns"), Some(7));
        for foreign in [
            "",
            "dvt",
            "dvt123",
            "dvt-1-ns",
            "dvtx12-0-ns",
            "dvt12x-0-ns",
            "dvt+12-0-ns",
            "dvt 12-0-ns",
            "xdvt12-0-ns",
            "dvtest",
            "dvw123-0-node-a",
            "dvph123n0",
            "cni-1234-5678",
            "dvt99999999999999999999-0-ns",
        ] {
            assert_eq!(super::owner_pid(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn the_sweep_picks_ours_whose_owner_is_dead_and_nothing_else() {
        let listing = "dvt100-0-br (id: 4)\n\
                       dvt100-0-node-a (id: 5)\n\
                       dvt200-3-ns\n\
                       dvw100-0-client\n\
                       production\n\
                       dvt300-1-combiner (id: 9)\n\
                       \n";
        assert_eq!(
            super::list_names(listing),
            [
                "dvt100-0-br",
                "dvt100-0-node-a",
                "dvt200-3-ns",
                "dvw100-0-client",
                "production",
                "dvt300-1-combiner"
            ]
        );
        // 200 is alive: its namespace stays; 100 and 300 are gone; foreign names never match.
        let alive = |pid: u32| pid == 200;
        assert_eq!(
            super::stale(listing, alive),
            [
                ("dvt100-0-br", 100),
                ("dvt100-0-node-a", 100),
                ("dvt300-1-combiner", 300)
            ]
        );
        assert!(super::stale(listing, |_| true).is_empty());
        // This very process is alive: its own namespaces are never swept.
        let own = format!("{}x\n", super::unique_prefix());
        assert!(super::stale(&own, super::pid_alive).is_empty());
    }
}
