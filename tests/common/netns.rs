//! A private network namespace for one test: processes run inside it (`ip netns exec`) on its
//! own 127.0.0.1, the test talks to them from a thread that entered it (`setns`), and nftables
//! rules inside it cut links without touching the host network. Needs root, iproute2 and nft;
//! without them [`Netns::create`] panics with a clear message (never a silent pass).
//!
//! Names carry the creating PID (`dvph<PID>n<SEQ>`): [`Netns::create`] first deletes namespaces
//! left by earlier runs whose process is dead. Drop deletes the namespace (processes inside it
//! must be killed first: `Proc` handles dropped before the `Netns`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

const PREFIX: &str = "dvph";

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes `dvph*` namespaces whose creating process is gone.
fn sweep_leftovers() {
    let Ok(list) = run(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('n').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run(Command::new("ip").args(["netns", "del", name]));
            eprintln!("deleted leftover network namespace {name} (process {pid} is gone)");
        }
    }
}

impl Netns {
    /// Creates a namespace with loopback up and checks that nft works inside it.
    pub fn create() -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        sweep_leftovers();
        let name = format!(
            "{PREFIX}{}n{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        if let Err(e) = run(Command::new("ip").args(["netns", "add", &name])) {
            panic!(
                "this test needs a private network namespace (`ip netns add`, root, iproute2): {e}"
            );
        }
        let ns = Self { name };
        if let Err(e) = run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"])) {
            panic!("bringing up loopback in {}: {e}", ns.name);
        }
        if let Err(e) = ns.nft("list ruleset") {
            panic!("this test needs nftables (`nft`) inside the namespace: {e}");
        }
        ns
    }

    /// `PROGRAM` run inside the namespace (`ip netns exec NAME PROGRAM`, which execs it: the
    /// child's PID is the program's).
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs an nft script (`-f -` semantics: one command per line) inside the namespace.
    pub fn nft(&self, script: &str) -> Result<String, String> {
        let path = std::env::temp_dir().join(format!("{}-{}.nft", self.name, std::process::id()));
        std::fs::write(&path, script).map_err(|e| e.to_string())?;
        let res = run(Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f"])
            .arg(&path));
        let _ = std::fs::remove_file(&path);
        res
    }

    /// Moves the calling thread into the namespace (sockets it creates afterwards live there).
    #[allow(unsafe_code)]
    pub fn enter_current_thread(&self) {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(format!("/var/run/netns/{}", self.name))
            .unwrap_or_else(|e| panic!("open namespace {}: {e}", self.name));
        // SAFETY: setns only reads the descriptor, which stays open for the call.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "setns into {}: {}",
            self.name,
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("deleting network namespace {}: {e}", self.name);
        }
    }
}
