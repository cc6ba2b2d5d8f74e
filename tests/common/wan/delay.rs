//! Link delay without netem: the member's iptables rules queue every packet of its veth to
//! NFQUEUE 0 of its namespace, and a thread that entered that namespace holds each packet and
//! issues its ACCEPT verdict once the link's delay (plus a uniform jitter) has passed. Packets
//! of one flow (protocol, addresses, ports) are released in the order they came, as on a wire.
//! The thread takes every queued packet each round (the kernel hands them over in batches),
//! then waits on the queue's socket until the next packet is due or another arrives, so it
//! costs no CPU while the link is idle; its largest lateness is recorded. (Where the queue's
//! socket cannot be found, it falls back to sleeping at most [`TICK`] between rounds.)

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::super::netns::enter_namespace;

const TICK: Duration = Duration::from_micros(250);
const QUEUE: u16 = 0;

/// Checks that an NFQUEUE can be bound inside namespace `ns`.
pub fn probe(ns: &str) -> Result<(), String> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        enter_namespace(&path)?;
        let mut q = nfq::Queue::open().map_err(|e| format!("NFQUEUE socket: {e}"))?;
        q.bind(QUEUE)
            .map_err(|e| format!("NFQUEUE bind (CONFIG_NETFILTER_NETLINK_QUEUE): {e}"))?;
        Ok(())
    })
    .join()
    .map_err(|_| "NFQUEUE probe thread panicked".to_owned())?
}

struct Shared {
    delay_us: AtomicU64,
    jitter_us: AtomicU64,
    stop: AtomicBool,
    released: AtomicU64,
    max_late_us: AtomicU64,
}

/// The delaying thread of one namespace; stopped (every held packet released) on drop.
pub struct Delayer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Whether the thread waits on its queue's socket (else it polls every [`TICK`]).
    waits_on_socket: bool,
}

struct Held {
    due: Instant,
    seq: u64,
    msg: nfq::Message,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// (protocol, source, destination, source port, destination port) of an IPv4 packet.
fn flow_key(p: &[u8]) -> u128 {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return 0;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let proto = u128::from(p[9]);
    let addrs = u128::from(u64::from_be_bytes(p[12..20].try_into().unwrap_or([0; 8])));
    let ports = if (proto == 6 || proto == 17) && p.len() >= ihl + 4 {
        u128::from(u32::from_be_bytes(
            p[ihl..ihl + 4].try_into().unwrap_or([0; 4]),
        ))
    } else {
        0
    };
    (proto << 96) | (addrs << 32) | ports
}

impl Delayer {
    /// Starts the thread inside namespace `ns` and binds its queue (waits until bound).
    pub fn start(ns: &str) -> Result<Self, String> {
        let shared = Arc::new(Shared {
            delay_us: AtomicU64::new(0),
            jitter_us: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            released: AtomicU64::new(0),
            max_late_us: AtomicU64::new(0),
        });
        let (tx, rx) = std::sync::mpsc::channel::<Result<bool, String>>();
        let path = format!("/run/netns/{ns}");
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("delay-{ns}"))
            .spawn(move || {
                let opened = (|| {
                    enter_namespace(&path)?;
                    let mut q = nfq::Queue::open().map_err(|e| format!("NFQUEUE: {e}"))?;
                    q.bind(QUEUE).map_err(|e| format!("NFQUEUE bind: {e}"))?;
                    // Headers are enough to tell flows apart.
                    q.set_copy_range(QUEUE, 64)
                        .map_err(|e| format!("copy range: {e}"))?;
                    q.set_queue_max_len(QUEUE, 200_000)
                        .map_err(|e| format!("queue length: {e}"))?;
                    q.set_nonblocking(true);
                    Ok(q)
                })();
                match opened {
                    Ok(q) => {
                        let fd = queue_fd();
                        let _ = tx.send(Ok(fd.is_some()));
                        run(q, fd, &s);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| format!("spawn: {e}"))?;
        let waits_on_socket = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| format!("delayer did not start: {e}"))??;
        Ok(Self {
            shared,
            thread: Some(thread),
            waits_on_socket,
        })
    }

    /// Whether the thread waits on its queue's socket between packets (no CPU while idle)
    /// rather than polling every [`TICK`].
    pub fn waits_on_socket(&self) -> bool {
        self.waits_on_socket
    }

    /// Sets the delay and jitter of packets queued from now on.
    pub fn set(&self, delay: Duration, jitter: Duration) {
        self.shared
            .delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
        self.shared
            .jitter_us
            .store(jitter.as_micros() as u64, Ordering::Relaxed);
    }

    /// Packets released and the largest lateness of a release.
    pub fn stats(&self) -> (u64, Duration) {
        (
            self.shared.released.load(Ordering::Relaxed),
            Duration::from_micros(self.shared.max_late_us.load(Ordering::Relaxed)),
        )
    }
}

impl Drop for Delayer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The descriptor of the NFQUEUE socket the calling thread opened in its namespace (the nfq
/// crate does not expose it): the one netlink-netfilter socket of this namespace
/// (`/proc/thread-self/net/netlink`, protocol 12) among this process's descriptors. `None`
/// when there is not exactly one.
fn queue_fd() -> Option<i32> {
    let table = std::fs::read_to_string("/proc/thread-self/net/netlink").ok()?;
    // Columns: sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&"12")).then(|| f.get(9).map(|i| format!("socket:[{i}]")))?
        })
        .collect();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if inodes.iter().any(|i| link.as_os_str() == i.as_str()) {
            if let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                found.push(fd);
            }
        }
    }
    (found.len() == 1).then(|| found[0])
}

/// Waits until `fd` is readable or `timeout` passed (a signal ends it early, which is harmless:
/// the caller's loop looks again).
#[allow(unsafe_code)]
fn wait_readable(fd: i32, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: one valid pollfd, a valid timespec and no signal mask; `fd` is the queue's open
    // socket, owned by the `nfq::Queue` the caller holds for the whole call.
    unsafe {
        libc::ppoll(&mut pfd, 1, &ts, std::ptr::null());
    }
}

/// Longest wait on the queue's socket with nothing held (the stop flag is checked between).
const IDLE_WAIT: Duration = Duration::from_millis(50);

fn run(mut q: nfq::Queue, fd: Option<i32>, s: &Shared) {
    let mut held: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    let mut last_due: HashMap<u128, Instant> = HashMap::new();
    let mut seq = 0u64;
    // xorshift64*: jitter needs no cryptographic quality.
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id());
    let mut next_prune = Instant::now();
    while !s.stop.load(Ordering::Relaxed) {
        loop {
            match q.recv() {
                Ok(mut msg) => {
                    let now = Instant::now();
                    let delay = s.delay_us.load(Ordering::Relaxed) as i64;
                    let jitter = s.jitter_us.load(Ordering::Relaxed) as i64;
                    let offset = if jitter > 0 {
                        rng ^= rng >> 12;
                        rng ^= rng << 25;
                        rng ^= rng >> 27;
                        let r = rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
                        (r % (2 * jitter as u64 + 1)) as i64 - jitter
                    } else {
                        0
                    };
                    let us = (delay + offset).max(0) as u64;
                    let key = flow_key(msg.get_payload());
                    let mut due = now + Duration::from_micros(us);
                    if let Some(prev) = last_due.get(&key) {
                        due = due.max(*prev);
                    }
                    last_due.insert(key, due);
                    msg.set_verdict(nfq::Verdict::Accept);
                    seq += 1;
                    held.push(Reverse(Held { due, seq, msg }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let now = Instant::now();
        while held.peek().is_some_and(|h| h.0.due <= now) {
            let Some(Reverse(h)) = held.pop() else { break };
            let late = now.saturating_duration_since(h.due).as_micros() as u64;
            s.max_late_us.fetch_max(late, Ordering::Relaxed);
            let _ = q.verdict(h.msg);
            s.released.fetch_add(1, Ordering::Relaxed);
        }
        if now >= next_prune {
            last_due.retain(|_, due| *due > now);
            next_prune = now + Duration::from_secs(1);
        }
        let longest = if fd.is_some() { IDLE_WAIT } else { TICK };
        let wait = held
            .peek()
            .map(|h| h.0.due.saturating_duration_since(now))
            .unwrap_or(longest)
            .min(longest);
        match fd {
            Some(fd) => wait_readable(fd, wait),
            None => std::thread::sleep(wait),
        }
    }
    while let Some(Reverse(h)) = held.pop() {
        let _ = q.verdict(h.msg);
    }
}
