//! Free loopback ports for the servers tests start (shared by every harness, and included by
//! path into the benches that start PostgreSQL, so that one counter hands ports out).

/// A free TCP port on 127.0.0.1 for a server a test starts.
///
/// Taken BELOW the kernel's ephemeral range (`ip_local_port_range`, 32768-60999 by default):
/// a port from that range (`bind(:0)`, released, bound again by the server later) can be taken
/// meanwhile as the local port of any outgoing connection, and the load tests open thousands
/// (a CI run failed with "Address already in use" that way). Ports are handed out once per
/// process from a base derived from the PID and checked by binding them. Falls back to an
/// ephemeral port when the range leaves no room below it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if ephemeral_low > LOW + 1_000 {
        let span = ephemeral_low - LOW;
        let base = std::process::id() % span;
        for _ in 0..span {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = LOW + (base + n) % span;
            if let Ok(port) = u16::try_from(port) {
                if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                    return port;
                }
            }
        }
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
