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
//! The namespaces are [`Netns`] of `netns.rs`, named `dvt<pid>-<seq>-<member>` (the bridge's
//! `...-br`), in addresses of `10.<x>.0.0/16` that exist only inside them; nothing is
//! configured in the root namespace. Dropping the bed kills the processes in its namespaces (by
//! PID) and deletes the namespaces; a new bed first deletes the leftovers of earlier runs whose
//! owner PID is dead ([`netns::sweep_stale`]). Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN),
//! `ip` and `tc` (iproute2), `nft` (nftables) and, without netem, `iptables` with its NFQUEUE
//! target; without them [`WanBed::new`] panics naming what is missing.

pub mod delay;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use super::netns::{self, enter_namespace, nft_script, run, run_ok, Netns};
use super::process::Proc;

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// SYN packets received (retransmissions included).
    pub syns: u64,
    /// Connection attempts: distinct (source address, source port) pairs that sent a SYN.
    pub attempts: u64,
    /// The same attempts by source address.
    pub attempts_from: std::collections::BTreeMap<Ipv4Addr, u64>,
    /// Completed handshakes: distinct pairs that sent the ACK after the SYN-ACK.
    pub established: u64,
}

impl TcpStats {
    /// Connection attempts from `ip`.
    pub fn attempts_from(&self, ip: Ipv4Addr) -> u64 {
        self.attempts_from.get(&ip).copied().unwrap_or(0)
    }
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
    /// The bridge's namespace first, then the members' in order.
    namespaces: Vec<Netns>,
}

/// Panics naming the missing capability unless namespaces, veths, bridges, nftables and (for
/// the fallback delay) NFQUEUE can be used, trying each in a namespace `<prefix>probe`.
fn check_capabilities(prefix: &str) -> DelayMode {
    netns::require("WAN test bed", &["ip", "nft", "tc", "iptables"]);
    let probe = Netns::add(prefix, "probe").unwrap_or_else(|e| panic!("WAN test bed needs {e}"));
    let probe_ns = probe.name.as_str();
    let result = (|| {
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
    drop(probe);
    result.unwrap_or_else(|e: String| panic!("WAN test bed needs {e}"))
}

impl WanBed {
    /// Creates one namespace per member name, all on one bridge, addresses `10.<x>.0.<10+i>`.
    pub fn new(names: &[&str]) -> Self {
        netns::sweep_stale();
        let prefix = netns::unique_prefix();
        let mode = check_capabilities(&prefix);
        // The addresses exist only inside the bed's namespaces; the subnet varies per bed so
        // that captures of different runs are told apart.
        let subnet = 16
            + (prefix.bytes().fold(0usize, |h, b| {
                h.wrapping_mul(31).wrapping_add(usize::from(b))
            }) % 200) as u8;
        let add =
            |role: &str| Netns::add(&prefix, role).unwrap_or_else(|e| panic!("WAN test bed: {e}"));
        let bridge = add("br");
        let bridge_ns = bridge.name.clone();
        let mut bed = Self {
            mode,
            prefix: prefix.clone(),
            bridge_ns: bridge_ns.clone(),
            members: Vec::new(),
            configs: BTreeMap::new(),
            delayers: BTreeMap::new(),
            namespaces: vec![bridge],
        };
        run_ok(
            "ip",
            &["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"],
        );
        run_ok("ip", &["-n", &bridge_ns, "link", "set", "br0", "up"]);
        for (i, name) in names.iter().enumerate() {
            let member_ns = add(name);
            let ns = member_ns.name.clone();
            bed.namespaces.push(member_ns);
            let ip = Ipv4Addr::new(10, subnet, 0, 10 + i as u8);
            let veth = format!("v{i}");
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
                    // Elements are `{"concat": ["10.1.2.3", 4567]}` (or wrapped in `elem`
                    // with a timeout).
                    for e in s["elem"].as_array().into_iter().flatten() {
                        let pair = e.get("elem").and_then(|x| x.get("val")).unwrap_or(e);
                        if let Some(ip) = pair["concat"][0]
                            .as_str()
                            .and_then(|a| a.parse::<Ipv4Addr>().ok())
                        {
                            *stats.attempts_from.entry(ip).or_default() += 1;
                        }
                    }
                } else if s["name"] == "established" {
                    stats.established = n;
                }
            }
        }
        stats
    }

    /// TCP connections established to local `port` of member `name` now (`ss` in its
    /// namespace).
    pub fn established_to(&self, name: &str, port: u16) -> usize {
        let ns = &self.member(name).ns;
        let filter = format!("( sport = :{port} )");
        run_ok(
            "ip",
            &[
                "netns",
                "exec",
                ns,
                "ss",
                "-Htn",
                "state",
                "established",
                &filter,
            ],
        )
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
    }

    /// Packets the NFQUEUE delayer of `name` released, and the largest lateness of a release
    /// behind its due time (zero under netem or without delay).
    pub fn delayer_stats(&self, name: &str) -> (u64, Duration) {
        self.delayers
            .get(name)
            .map(|d| d.stats())
            .unwrap_or((0, Duration::ZERO))
    }

    /// Whether `name`'s NFQUEUE delayer waits on its queue's socket between packets (`None`
    /// without a delayer).
    pub fn delayer_waits_on_socket(&self, name: &str) -> Option<bool> {
        self.delayers.get(name).map(delay::Delayer::waits_on_socket)
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

    /// Starts `dvsigner ARGS` inside member `name`'s namespace
    /// ([`Netns::spawn_dvsigner`]), logging to `log`.
    pub fn spawn(&self, name: &str, proc_name: &str, args: &[String], log: &Path) -> Proc {
        self.namespace(name)
            .spawn_dvsigner(proc_name, args, log, |_| {})
    }

    fn namespace(&self, name: &str) -> &Netns {
        let ns = &self.member(name).ns;
        self.namespaces
            .iter()
            .find(|n| &n.name == ns)
            .expect("member namespace")
    }

    /// A tokio runtime whose threads all live in member `name`'s namespace: sockets it opens
    /// (a reqwest client's connections) are that member's.
    pub fn runtime(&self, name: &str, threads: usize) -> tokio::runtime::Runtime {
        let path = self.namespace(name).path();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .max_blocking_threads(4)
            .enable_all()
            .on_thread_start(move || {
                enter_namespace(&path).expect("enter client namespace");
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
        // The delay threads first (they hold queues inside the namespaces), then the members'
        // namespaces (killing what runs inside), the bridge's last.
        self.delayers.clear();
        while let Some(ns) = self.namespaces.pop() {
            drop(ns);
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
