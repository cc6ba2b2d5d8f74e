//! A WAN test bed made of real kernel parts: every member (signer node, combiner, client) runs in
//! its own Linux network namespace, joined to a bridge (in a namespace of its own) by a veth
//! pair. Per-link delay and jitter come from `tc qdisc netem` where the kernel has it, otherwise
//! from packets queued to user space with iptables `NFQUEUE` rules and released after
//! the link's delay by a thread inside the member's namespace ([`delay`]). Loss and partitions
//! are nftables rules in the members' namespaces.
//!
//! A link is a member's veth: its delay applies to every packet leaving and to every packet
//! entering the member, so one-way delay between two members is the sum of their link delays
//! and the round trip between a member with delay `d` and one without is `2 d`.
//!
//! Everything is created under unique names (`dvw<pid>-<seq>-...`), in addresses of
//! `10.<x>.0.0/16` that exist only inside these namespaces; nothing is configured in the root
//! namespace. Dropping the bed kills the processes in its namespaces (by PID) and deletes the
//! namespaces; a new bed first deletes the leftovers of earlier runs whose owner PID is dead.
//! Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), `ip` and `tc` (iproute2), `nft` (nftables) and,
//! without netem, `iptables` with its NFQUEUE target; without
//! them [`WanBed::new`] panics naming what is missing.

pub mod delay;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::process::{bin, Proc};

/// How link delay is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayMode {
    /// `tc qdisc ... netem` on both ends of the member's veth.
    Netem,
    /// NFQUEUE: packets queued to a thread in the member's namespace, released after the delay.
    Nfqueue,
}

impl std::fmt::Display for DelayMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Netem => "tc netem",
            Self::Nfqueue => "NFQUEUE (user-space release after the link delay)",
        })
    }
}

/// Conditions of one member's link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Link {
    /// Delay per direction.
    pub delay: Duration,
    /// Uniform jitter (plus or minus) per packet.
    pub jitter: Duration,
    /// Packets dropped per direction, per mille.
    pub loss_permille: u32,
}

impl Link {
    /// `delay` per direction with `percent` jitter.
    pub fn delay_ms(ms: u64, jitter_percent: u64) -> Self {
        Self {
            delay: Duration::from_millis(ms),
            jitter: Duration::from_micros(ms * 10 * jitter_percent),
            loss_permille: 0,
        }
    }
}

/// Counts of TCP connection set-ups towards a watched port of a member (nftables counters in
/// its namespace).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// SYN packets received (retransmissions included).
    pub syns: u64,
    /// Connection attempts: distinct (source address, source port) pairs that sent a SYN.
    pub attempts: u64,
    /// Completed handshakes: distinct pairs that sent the ACK after the SYN-ACK.
    pub established: u64,
}

#[derive(Debug, Clone, Default)]
struct MemberConfig {
    link: Link,
    blocked: Vec<Ipv4Addr>,
    watch_port: Option<u16>,
}

/// One namespace of the bed.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    veth: String,
}

/// The bed. See the module documentation.
pub struct WanBed {
    pub mode: DelayMode,
    prefix: String,
    bridge_ns: String,
    members: Vec<Member>,
    configs: BTreeMap<String, MemberConfig>,
    delayers: BTreeMap<String, delay::Delayer>,
    namespaces: Vec<String>,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);
const PREFIX: &str = "dvw";

/// Runs a command, returning stdout or a description of the failure.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
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

fn run_ok(program: &str, args: &[&str]) -> String {
    run(program, args).unwrap_or_else(|e| panic!("WAN test bed: {e}"))
}

/// Runs `nft -f -` in namespace `ns` with `script` on stdin.
fn nft_script(ns: &str, script: &str) -> Result<(), String> {
    use std::io::Write;
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
        .expect("stdin")
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

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Kills (SIGKILL, by PID) every process inside namespace `ns` and deletes it.
fn delete_namespace(ns: &str) {
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
    let _ = run("ip", &["netns", "del", ns]);
}

/// Deletes namespaces left by earlier runs whose owner (the PID in the name) is gone.
fn sweep_stale() {
    let list = run("ip", &["netns", "list"]).unwrap_or_default();
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !pid_alive(pid) {
            eprintln!("WAN test bed: deleting {name}, left by dead process {pid}");
            delete_namespace(name);
        }
    }
}

/// Panics naming the missing capability unless namespaces, veths, nftables and (for the
/// fallback delay) NFQUEUE can be used.
fn check_capabilities(probe_ns: &str) -> DelayMode {
    let euid = nix::unistd::geteuid();
    assert!(
        euid.is_root(),
        "WAN test bed needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN to create network namespaces); \
         running as uid {euid}"
    );
    for tool in ["ip", "nft", "tc", "iptables"] {
        let found = run("sh", &["-c", &format!("command -v {tool}")]).is_ok();
        assert!(
            found,
            "WAN test bed needs `{tool}` (packages iproute2, nftables and iptables)"
        );
    }
    if let Err(e) = run("ip", &["netns", "add", probe_ns]) {
        panic!("WAN test bed needs network namespaces (`ip netns add`): {e}");
    }
    let result = (|| {
        run("ip", &["-n", probe_ns, "link", "set", "lo", "up"])
            .map_err(|e| format!("network namespaces: {e}"))?;
        run(
            "ip",
            &[
                "-n", probe_ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1",
            ],
        )
        .map_err(|e| format!("veth pairs (CONFIG_VETH): {e}"))?;
        run(
            "ip",
            &["-n", probe_ns, "link", "add", "b0", "type", "bridge"],
        )
        .map_err(|e| format!("bridges (CONFIG_BRIDGE): {e}"))?;
        nft_script(
            probe_ns,
            "table inet probe {\n chain c {\n  type filter hook output priority 0;\n  numgen random mod 1000 < 0 drop\n }\n}\n",
        )
        .map_err(|e| format!("nftables (CONFIG_NF_TABLES): {e}"))?;
        let netem = run(
            "tc",
            &[
                "-n", probe_ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
            ],
        )
        .is_ok();
        if netem {
            return Ok(DelayMode::Netem);
        }
        delay::probe(probe_ns)
            .map_err(|e| format!("no netem (CONFIG_NET_SCH_NETEM) and NFQUEUE failed: {e}"))?;
        run(
            "ip",
            &[
                "netns",
                "exec",
                probe_ns,
                "iptables",
                "-A",
                "OUTPUT",
                "-o",
                "p0",
                "-j",
                "NFQUEUE",
                "--queue-num",
                "0",
                "--queue-bypass",
            ],
        )
        .map_err(|e| {
            format!("no netem (CONFIG_NET_SCH_NETEM) and no iptables NFQUEUE target: {e}")
        })?;
        Ok(DelayMode::Nfqueue)
    })();
    delete_namespace(probe_ns);
    result.unwrap_or_else(|e: String| panic!("WAN test bed needs {e}"))
}

impl WanBed {
    /// Creates one namespace per member name, all on one bridge, addresses `10.<x>.0.<10+i>`.
    pub fn new(names: &[&str]) -> Self {
        sweep_stale();
        let pid = std::process::id();
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("{PREFIX}{pid}-{seq}-");
        let mode = check_capabilities(&format!("{prefix}probe"));
        let subnet = 16 + ((pid as usize + seq) % 200) as u8;
        let bridge_ns = format!("{prefix}br");
        let mut bed = Self {
            mode,
            prefix: prefix.clone(),
            bridge_ns: bridge_ns.clone(),
            members: Vec::new(),
            configs: BTreeMap::new(),
            delayers: BTreeMap::new(),
            namespaces: Vec::new(),
        };
        run_ok("ip", &["netns", "add", &bridge_ns]);
        bed.namespaces.push(bridge_ns.clone());
        run_ok("ip", &["-n", &bridge_ns, "link", "set", "lo", "up"]);
        run_ok(
            "ip",
            &["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"],
        );
        run_ok("ip", &["-n", &bridge_ns, "link", "set", "br0", "up"]);
        for (i, name) in names.iter().enumerate() {
            let ns = format!("{prefix}{name}");
            let ip = Ipv4Addr::new(10, subnet, 0, 10 + i as u8);
            let veth = format!("v{i}");
            run_ok("ip", &["netns", "add", &ns]);
            bed.namespaces.push(ns.clone());
            run_ok(
                "ip",
                &[
                    "-n", &bridge_ns, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
            );
            run_ok(
                "ip",
                &[
                    "-n", &bridge_ns, "link", "set", &veth, "master", "br0", "up",
                ],
            );
            run_ok("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            run_ok(
                "ip",
                &["-n", &ns, "addr", "add", &format!("{ip}/16"), "dev", "eth0"],
            );
            run_ok("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            bed.members.push(Member {
                name: (*name).to_owned(),
                ns,
                ip,
                veth,
            });
            bed.configs
                .insert((*name).to_owned(), MemberConfig::default());
        }
        for m in bed.members.clone() {
            bed.apply(&m.name);
        }
        bed
    }

    /// The member called `name`.
    pub fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    /// Address of member `name`.
    pub fn ip(&self, name: &str) -> Ipv4Addr {
        self.member(name).ip
    }

    /// Sets the conditions of `name`'s link (resets its TCP counters).
    pub fn set_link(&mut self, name: &str, link: Link) {
        self.configs.get_mut(name).expect("member").link = link;
        self.apply(name);
    }

    /// Drops every packet between the members of `side_a` and those of `side_b`.
    pub fn partition(&mut self, side_a: &[&str], side_b: &[&str]) {
        for a in side_a {
            for b in side_b {
                let (ia, ib) = (self.ip(a), self.ip(b));
                self.configs.get_mut(*a).expect("member").blocked.push(ib);
                self.configs.get_mut(*b).expect("member").blocked.push(ia);
            }
        }
        let touched: Vec<String> = side_a.iter().chain(side_b).map(|s| s.to_string()).collect();
        for name in touched {
            self.apply(&name);
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        let names: Vec<String> = self.configs.keys().cloned().collect();
        for name in names {
            let c = self.configs.get_mut(&name).expect("member");
            if !c.blocked.is_empty() {
                c.blocked.clear();
                self.apply(&name);
            }
        }
    }

    /// Counts TCP connection set-ups towards `port` of member `name` from now on.
    pub fn watch_tcp_port(&mut self, name: &str, port: u16) {
        self.configs.get_mut(name).expect("member").watch_port = Some(port);
        self.apply(name);
    }

    /// The counts since [`WanBed::watch_tcp_port`] (or the last change of `name`'s link).
    pub fn tcp_stats(&self, name: &str) -> TcpStats {
        let ns = &self.member(name).ns;
        let text = run_ok(
            "ip",
            &[
                "netns", "exec", ns, "nft", "-j", "list", "table", "inet", "dvw",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("nft json");
        let mut stats = TcpStats::default();
        for item in v["nftables"].as_array().into_iter().flatten() {
            if let Some(c) = item.get("counter") {
                if c["name"] == "syns" {
                    stats.syns = c["packets"].as_u64().unwrap_or(0);
                }
            }
            if let Some(s) = item.get("set") {
                let n = s["elem"].as_array().map(|a| a.len() as u64).unwrap_or(0);
                if s["name"] == "attempts" {
                    stats.attempts = n;
                } else if s["name"] == "established" {
                    stats.established = n;
                }
            }
        }
        stats
    }

    /// Packets the NFQUEUE delayer of `name` released, and the largest lateness of a release
    /// behind its due time (zero under netem or without delay).
    pub fn delayer_stats(&self, name: &str) -> (u64, Duration) {
        self.delayers
            .get(name)
            .map(|d| d.stats())
            .unwrap_or((0, Duration::ZERO))
    }

    /// Writes the nftables table (and netem qdiscs or the delayer) for `name`'s config.
    fn apply(&mut self, name: &str) {
        let m = self.member(name).clone();
        let c = self.configs[name].clone();
        let use_queue = self.mode == DelayMode::Nfqueue && !c.link.delay.is_zero();
        if use_queue {
            let d = self
                .delayers
                .entry(name.to_owned())
                .or_insert_with(|| delay::Delayer::start(&m.ns).expect("start delayer"));
            d.set(c.link.delay, c.link.jitter);
        } else if let Some(d) = self.delayers.get(name) {
            d.set(Duration::ZERO, Duration::ZERO);
        }
        if self.mode == DelayMode::Netem {
            let delay = format!("{}us", c.link.delay.as_micros());
            let jitter = format!("{}us", c.link.jitter.as_micros());
            for (ns, dev) in [(&m.ns, "eth0"), (&self.bridge_ns, m.veth.as_str())] {
                let _ = run("tc", &["-n", ns, "qdisc", "del", "dev", dev, "root"]);
                if !c.link.delay.is_zero() {
                    run_ok(
                        "tc",
                        &[
                            "-n", ns, "qdisc", "add", "dev", dev, "root", "netem", "limit",
                            "100000", "delay", &delay, &jitter,
                        ],
                    );
                }
            }
        }
        let mut script = String::from("table inet dvw\ndelete table inet dvw\ntable inet dvw {\n");
        script.push_str(
            "  counter syns {}\n  set attempts { type ipv4_addr . inet_service; size 65535; flags dynamic; }\n  set established { type ipv4_addr . inet_service; size 65535; flags dynamic; }\n",
        );
        for (hook, dir, addr) in [
            ("input", "iifname", "saddr"),
            ("output", "oifname", "daddr"),
        ] {
            script.push_str(&format!(
                "  chain {hook} {{\n    type filter hook {hook} priority 0; policy accept;\n    {dir} != \"eth0\" accept\n"
            ));
            for ip in &c.blocked {
                script.push_str(&format!("    ip {addr} {ip} drop\n"));
            }
            if c.link.loss_permille > 0 {
                script.push_str(&format!(
                    "    numgen random mod 1000 < {} drop\n",
                    c.link.loss_permille
                ));
            }
            if let (Some(port), "input") = (c.watch_port, hook) {
                script.push_str(&format!(
                    "    tcp dport {port} tcp flags & (syn | ack) == syn counter name syns add @attempts {{ ip saddr . tcp sport }}\n    tcp dport {port} tcp flags & (syn | ack) == ack add @established {{ ip saddr . tcp sport }}\n"
                ));
            }
            script.push_str("  }\n");
        }
        script.push_str("}\n");
        // The first `table`/`delete` pair makes the script work whether or not the table exists.
        nft_script(&m.ns, &script).unwrap_or_else(|e| panic!("WAN test bed: {e}"));
        // The queue rules: the kernels this was built on have the iptables NFQUEUE target
        // (through nft_compat) but not nftables' own `queue` statement (CONFIG_NFT_QUEUE).
        for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            run_ok("ip", &["netns", "exec", &m.ns, "iptables", "-F", chain]);
            if use_queue {
                run_ok(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        &m.ns,
                        "iptables",
                        "-A",
                        chain,
                        dir,
                        "eth0",
                        "-j",
                        "NFQUEUE",
                        "--queue-num",
                        "0",
                        "--queue-bypass",
                    ],
                );
            }
        }
    }

    /// Starts `dvsigner ARGS` inside member `name`'s namespace (`ip netns exec`, which execs the
    /// binary: the PID is dvsigner's), logging to `log`, with the same hermetic environment as
    /// [`super::process::command`].
    pub fn spawn(&self, name: &str, proc_name: &str, args: &[String], log: &Path) -> Proc {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("clone");
        let mut cmd = Command::new("ip");
        for (key, _) in std::env::vars_os() {
            let text = key.to_string_lossy();
            if text.starts_with("DVSIGNER_") || text.starts_with("VAULT_") {
                cmd.env_remove(&key);
            }
        }
        cmd.args(["netns", "exec", &self.member(name).ns])
            .arg(bin())
            .args(args)
            .env("DVSIGNER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd.spawn().expect("spawn dvsigner in namespace");
        Proc {
            child,
            name: proc_name.to_owned(),
            log: log.to_owned(),
        }
    }

    /// A tokio runtime whose threads all live in member `name`'s namespace: sockets it opens
    /// (a reqwest client's connections) are that member's.
    pub fn runtime(&self, name: &str, threads: usize) -> tokio::runtime::Runtime {
        let path = format!("/run/netns/{}", self.member(name).ns);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .max_blocking_threads(4)
            .enable_all()
            .on_thread_start(move || {
                delay::enter_namespace(&path).expect("enter client namespace");
            })
            .build()
            .expect("runtime")
    }

    /// The prefix of this bed's names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Drop for WanBed {
    fn drop(&mut self) {
        self.delayers.clear();
        for ns in self.namespaces.iter().rev() {
            delete_namespace(ns);
        }
        let left: Vec<String> = run("ip", &["netns", "list"])
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(&self.prefix))
            .map(str::to_owned)
            .collect();
        if !left.is_empty() && !std::thread::panicking() {
            panic!("WAN test bed: namespaces left after cleanup: {left:?}");
        }
    }
}
