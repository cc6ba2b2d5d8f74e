//! Bounded, ordered dispatch of partial-signature requests to one signer node.
//!
//! Each node has a gate: at most `max_in_flight` requests are on the wire to it at once (so at
//! most that many keep-alive connections, all reused: HTTP/1.1 carries one request per
//! connection at a time), and the rest wait in arrival order. A waiting request is never sent
//! once it no longer matters:
//! - its sign request was answered meanwhile (the other nodes gave `t` partials): it is dropped;
//! - it could no longer make its deadline: the time left is below the node's recent answer
//!   time ([`NodeGate::service_time`]); it is dropped and the sign request is told it was
//!   shed (503 with `Retry-After`).
//!
//! Spares. A sign request needs `t` partials; of the nodes it is sent to, the `t` expected to
//! answer first (shortest queue and answer time) get it as *needed* requests, the others as
//! *spares*. A spare goes out at once only to a node that is not loaded (nothing waiting for
//! it, fewer than [`GateLimits::spare_below`] requests on the wire); otherwise it waits behind
//! every needed request and is dropped once its sign request is answered (or goes out when
//! the node's load falls first). It becomes
//! needed (takes its place among the needed requests, in arrival order) as soon as its sign
//! request wants it: a needed node failed, refused or gave a wrong partial, or a third of the
//! deadline passed without the needed nodes' queues being the cause
//! ([`Combiner`](super::Combiner) sets the flag). So at ordinary load every node still gets
//! every request (fastest answer, every node seen to work and taking part in duty agreement,
//! a slow node's late partials counted), while under a burst each sign request costs about
//! `t` node signatures instead of `n`: a burst of 1,000 through a 3-of-4 cluster needs about
//! 3,000 signatures, not 4,000, which counts when the nodes share cores.
//!
//! And a node that answers after the combiner has answered (a slow or far node) gets at most
//! `max_unneeded` such requests at once: while that many of its in-flight requests belong to
//! sign requests already answered, new requests to it wait (and are dropped once their own
//! sign request is answered). A node answering after 3 s therefore keeps a handful of
//! connections busy instead of one new connection (TCP and TLS handshake) per request.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::pool::Answered;

/// Default most requests in flight to one node.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Default most in-flight requests to one node whose sign request was already answered.
pub const DEFAULT_MAX_UNNEEDED: usize = 4;

/// Limits of a [`NodeGate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateLimits {
    /// Most requests on the wire to the node at once.
    pub max_in_flight: usize,
    /// Most of those whose sign request was already answered.
    pub max_unneeded: usize,
}

impl GateLimits {
    /// Spares go out at once only while fewer requests than this are on the wire to the node:
    /// an eighth of the in-flight limit, at least 1, at most 16 (a node with more on the wire
    /// is loaded whatever its limit: the limit is sized for far nodes, whose requests stay on
    /// the wire for a round trip).
    pub fn spare_below(&self) -> usize {
        (self.max_in_flight / 8).clamp(1, 16)
    }
}

impl Default for GateLimits {
    fn default() -> Self {
        Self {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_unneeded: DEFAULT_MAX_UNNEEDED,
        }
    }
}

/// Why a request was not sent to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSent {
    /// Its sign request was answered while it waited.
    Answered,
    /// It could no longer make its deadline (the node's queue is too long).
    Overloaded {
        /// How long it waited.
        waited: Duration,
        /// Requests still waiting for the node.
        queued: usize,
    },
}

struct Waiter {
    id: u64,
    answered: Answered,
    /// For a spare: set once its sign request wants it (then it waits as a needed request).
    wanted: Option<Answered>,
    until: Instant,
    tx: tokio::sync::oneshot::Sender<()>,
}

impl Waiter {
    fn is_wanted(&self) -> bool {
        self.wanted.as_ref().is_none_or(Answered::is_set)
    }
}

#[derive(Default)]
struct State {
    /// Requests on the wire: id, its sign request's answered flag, and when it went out.
    in_flight: Vec<(u64, Answered, Instant)>,
    /// Needed requests (and spares that became needed), in arrival order.
    waiters: VecDeque<Waiter>,
    /// Spares not wanted yet, in arrival order.
    spares: VecDeque<Waiter>,
    next_id: u64,
}

impl State {
    /// The needed requests' queue, or the spares'.
    fn queue(&mut self, spares: bool) -> &mut VecDeque<Waiter> {
        if spares {
            &mut self.spares
        } else {
            &mut self.waiters
        }
    }
}

/// The gate of one node (see the module documentation).
pub struct NodeGate {
    limits: GateLimits,
    state: Mutex<State>,
    /// Exponential moving average of the node's answer time, in microseconds (0: none yet).
    service_us: AtomicU64,
    /// Requests dropped because their sign request was answered while they waited.
    pub dropped_answered: AtomicU64,
    /// Requests dropped because they could no longer make their deadline.
    pub dropped_overloaded: AtomicU64,
}

impl std::fmt::Debug for NodeGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeGate")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A request's right to be on the wire; gives its place back when dropped.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<NodeGate>,
    id: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release(self.id);
    }
}

impl NodeGate {
    /// A gate with these limits (each at least 1).
    pub fn new(limits: GateLimits) -> Self {
        Self {
            limits: GateLimits {
                max_in_flight: limits.max_in_flight.max(1),
                max_unneeded: limits.max_unneeded.max(1),
            },
            state: Mutex::new(State::default()),
            service_us: AtomicU64::new(0),
            dropped_answered: AtomicU64::new(0),
            dropped_overloaded: AtomicU64::new(0),
        }
    }

    /// The limits.
    pub fn limits(&self) -> GateLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent across a panic (every change is a single push or
        // remove), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The node's recent answer time (moving average), if it answered yet.
    pub fn service_time(&self) -> Option<Duration> {
        match self.service_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Records how long one answer took (moving average over about the last 8).
    pub fn record_service_time(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = self.service_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            us
        } else {
            (old.saturating_mul(7).saturating_add(us)) / 8
        };
        self.service_us.store(new.max(1), Ordering::Relaxed);
    }

    /// Requests on the wire and requests waiting (spares included).
    pub fn load(&self) -> (usize, usize) {
        let s = self.lock();
        (s.in_flight.len(), s.waiters.len() + s.spares.len())
    }

    /// Time until a request queued now would be answered, from the queue and the node's
    /// recent answer time (or the age of its oldest request on the wire, when longer): one
    /// answer time when it can be sent at once, else
    /// `((waiting + 1) / max_in_flight + 1) x answer time`. `None` before the node's first
    /// answer.
    pub fn expected_answer(&self) -> Option<Duration> {
        let service = self.service_time()?;
        let (free, waiting, oldest) = {
            let s = self.lock();
            (
                s.waiters.is_empty() && s.in_flight.len() < self.limits.max_in_flight,
                s.waiters.len(),
                s.in_flight.iter().map(|(_, _, since)| *since).min(),
            )
        };
        // A request on the wire for longer than the node's usual answer time (a node cut off
        // or stalled answers nothing, so its average alone would not move) counts instead.
        let service = service.max(oldest.map_or(Duration::ZERO, |t| t.elapsed()));
        let rounds = if free {
            1.0
        } else {
            (waiting + 1) as f64 / self.limits.max_in_flight as f64 + 1.0
        };
        Some(service.mul_f64(rounds))
    }

    /// Whether a needed request would go out at once (nothing waits, room on the wire).
    pub fn can_take_now(&self) -> bool {
        self.takes_needed_now(&self.lock())
    }

    /// Whether requests queue because the node has as many on the wire as its in-flight limit
    /// allows (load), rather than because it is slow (its answered-but-running requests at
    /// their limit) or not at all.
    pub fn saturated(&self) -> bool {
        let s = self.lock();
        !s.waiters.is_empty() && s.in_flight.len() >= self.limits.max_in_flight
    }

    /// Whether a needed request goes out at once: nothing waits before it, room on the wire.
    fn takes_needed_now(&self, s: &State) -> bool {
        s.waiters.is_empty() && self.can_send(s)
    }

    fn can_send(&self, s: &State) -> bool {
        s.in_flight.len() < self.limits.max_in_flight
            && s.in_flight.iter().filter(|(_, a, _)| a.is_set()).count() < self.limits.max_unneeded
    }

    /// Whether a spare may go out now: the node is not loaded (nothing waits for it, fewer than
    /// [`GateLimits::spare_below`] requests on the wire).
    fn can_send_spare(&self, s: &State) -> bool {
        s.waiters.is_empty() && s.in_flight.len() < self.limits.spare_below() && self.can_send(s)
    }

    /// Waits (in arrival order) until the request may be sent, or says why it is not sent.
    /// `until` is the sign request's deadline. `spare`: the request is a spare, needed once
    /// that flag is set (see the module documentation); `None`: needed now.
    pub async fn acquire(
        self: &Arc<Self>,
        answered: &Answered,
        until: Instant,
        spare: Option<&Answered>,
    ) -> Result<Permit, NotSent> {
        let started = Instant::now();
        let needed = spare.is_none_or(Answered::is_set);
        let (id, mut rx) = {
            let mut s = self.lock();
            let id = s.next_id;
            s.next_id += 1;
            let go = if needed {
                self.takes_needed_now(&s)
            } else {
                s.spares.is_empty() && self.can_send_spare(&s)
            };
            if go {
                s.in_flight.push((id, answered.clone(), Instant::now()));
                return Ok(Permit {
                    gate: Arc::clone(self),
                    id,
                });
            }
            if answered.is_set() {
                drop(s);
                self.dropped_answered.fetch_add(1, Ordering::Relaxed);
                return Err(NotSent::Answered);
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            let w = Waiter {
                id,
                answered: answered.clone(),
                wanted: spare.cloned(),
                until,
                tx,
            };
            s.queue(!needed).push_back(w);
            (id, rx)
        };
        let mut promoted = needed;
        let granted = loop {
            tokio::select! {
                r = &mut rx => break r.is_ok(),
                () = answered.wait() => break false,
                () = tokio::time::sleep_until(until.into()) => break false,
                () = async { if let Some(w) = spare { w.wait().await } }, if !promoted => {
                    // Wanted now: join the needed requests (and go out if there is room).
                    promoted = true;
                    let mut s = self.lock();
                    self.dispatch(&mut s);
                }
            }
        };
        if granted {
            return Ok(Permit {
                gate: Arc::clone(self),
                id,
            });
        }
        // Not granted (yet): leave the queue. A permit granted at the same moment is given back.
        let queued = {
            let mut s = self.lock();
            let pos = s.waiters.iter().position(|w| w.id == id);
            if let Some(pos) = pos {
                s.waiters.remove(pos);
            } else if let Some(pos) = s.spares.iter().position(|w| w.id == id) {
                s.spares.remove(pos);
            } else if s.in_flight.iter().any(|(i, _, _)| *i == id) {
                drop(s);
                drop(Permit {
                    gate: Arc::clone(self),
                    id,
                });
                s = self.lock();
            }
            s.waiters.len() + s.spares.len()
        };
        if answered.is_set() {
            self.dropped_answered.fetch_add(1, Ordering::Relaxed);
            Err(NotSent::Answered)
        } else {
            self.dropped_overloaded.fetch_add(1, Ordering::Relaxed);
            Err(NotSent::Overloaded {
                waited: started.elapsed(),
                queued,
            })
        }
    }

    fn release(&self, id: u64) {
        let mut s = self.lock();
        if let Some(pos) = s.in_flight.iter().position(|(i, _, _)| *i == id) {
            s.in_flight.swap_remove(pos);
        }
        self.dispatch(&mut s);
    }

    /// Hands places to waiters in order, spares last; drops those no longer worth sending
    /// (their task sees its channel closed and reports why).
    fn dispatch(&self, s: &mut State) {
        let now = Instant::now();
        let service = self.service_time().unwrap_or(Duration::ZERO);
        // Spares that became needed join the needed requests in arrival order.
        if s.spares.iter().any(Waiter::is_wanted) {
            let spares = std::mem::take(&mut s.spares);
            for w in spares {
                if w.is_wanted() {
                    let at = s.waiters.partition_point(|x| x.id < w.id);
                    s.waiters.insert(at, w);
                } else {
                    s.spares.push_back(w);
                }
            }
        }
        self.dispatch_queue(s, false, now, service);
        if s.waiters.is_empty() {
            self.dispatch_queue(s, true, now, service);
        }
    }

    /// [`NodeGate::dispatch`] for one queue: the needed requests, or the spares.
    fn dispatch_queue(&self, s: &mut State, spares: bool, now: Instant, service: Duration) {
        while let Some(front) = s.queue(spares).front() {
            let hopeless = front.until.saturating_duration_since(now) < service;
            if front.answered.is_set() || front.tx.is_closed() || hopeless {
                if let Some(w) = s.queue(spares).pop_front() {
                    // Its task wakes on the closed channel and counts the drop itself.
                    drop(w.tx);
                }
                continue;
            }
            let room = if spares {
                self.can_send_spare(s)
            } else {
                self.can_send(s)
            };
            if !room {
                break;
            }
            let Some(w) = s.queue(spares).pop_front() else {
                break;
            };
            s.in_flight.push((w.id, w.answered.clone(), now));
            if w.tx.send(()).is_err() {
                s.in_flight.pop();
            }
        }
    }
}

/// Admission control: `Some(retry_after)` when a sign request arriving now cannot be answered
/// within `deadline` because fewer than `t` of its nodes (`gates`) are expected to answer in
/// time ([`NodeGate::expected_answer`]); `retry_after` is how much longer the `t`-th soonest
/// needs, at least a second.
///
/// A node that can take the request at once never counts as late, whatever its recent answer
/// time: that figure is history, and only requests sent to the node can bring it up to date.
/// Counting it would shed every request once `t` nodes' recent answers took longer than the
/// deadline (after a burst whose answers ran up to their timeout, say) and, with nothing sent,
/// keep shedding them for good.
pub fn shed_for_load<'a>(
    gates: impl IntoIterator<Item = &'a NodeGate>,
    t: usize,
    deadline: Duration,
) -> Option<Duration> {
    let mut expected: Vec<Duration> = gates
        .into_iter()
        .map(|g| {
            if g.can_take_now() {
                Duration::ZERO
            } else {
                g.expected_answer().unwrap_or(Duration::ZERO)
            }
        })
        .collect();
    expected.sort_unstable();
    let t_th = *expected.get(t.checked_sub(1)?)?;
    (t_th > deadline).then(|| t_th.saturating_sub(deadline).max(Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max_in_flight: usize, max_unneeded: usize) -> Arc<NodeGate> {
        Arc::new(NodeGate::new(GateLimits {
            max_in_flight,
            max_unneeded,
        }))
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[tokio::test]
    async fn waiters_are_served_in_order_within_the_limit() {
        let g = gate(2, 2);
        let a = Answered::default();
        let p1 = g.acquire(&a, far(), None).await.expect("first");
        let p2 = g.acquire(&a, far(), None).await.expect("second");
        assert_eq!(g.load(), (2, 0));
        let (g3, a3) = (g.clone(), a.clone());
        let third = tokio::spawn(async move { g3.acquire(&a3, far(), None).await.map(|p| (3, p)) });
        while g.load().1 < 1 {
            tokio::task::yield_now().await;
        }
        let (g4, a4) = (g.clone(), a.clone());
        let fourth =
            tokio::spawn(async move { g4.acquire(&a4, far(), None).await.map(|p| (4, p)) });
        while g.load().1 < 2 {
            tokio::task::yield_now().await;
        }
        drop(p1);
        let (n, p3) = third.await.expect("task").expect("granted");
        assert_eq!(n, 3);
        assert_eq!(g.load(), (2, 1), "the fourth still waits");
        drop(p2);
        let (n, _p4) = fourth.await.expect("task").expect("granted");
        assert_eq!(n, 4);
        drop(p3);
        assert_eq!(g.load(), (1, 0));
    }

    #[tokio::test]
    async fn a_waiter_whose_request_was_answered_is_not_sent() {
        let g = gate(1, 1);
        let busy = Answered::default();
        let _p = g.acquire(&busy, far(), None).await.expect("first");
        let other = Answered::default();
        let guard = other.guard();
        let (g2, o2) = (g.clone(), other.clone());
        let waiting = tokio::spawn(async move { g2.acquire(&o2, far(), None).await.map(|_| ()) });
        while g.load().1 < 1 {
            tokio::task::yield_now().await;
        }
        drop(guard); // the other nodes answered
        assert_eq!(waiting.await.expect("task"), Err(NotSent::Answered));
        assert_eq!(g.load(), (1, 0));
        assert_eq!(g.dropped_answered.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_node_busy_with_answered_requests_gets_no_more_until_one_ends() {
        // Two requests in flight whose sign requests were answered (a slow node): a third is
        // held back although the in-flight limit allows it, and dropped once its own sign
        // request is answered.
        let g = gate(100, 2);
        let mut permits = Vec::new();
        for _ in 0..2 {
            let a = Answered::default();
            permits.push(g.acquire(&a, far(), None).await.expect("sent"));
            drop(a.guard());
        }
        let third = Answered::default();
        let guard = third.guard();
        let (g2, t2) = (g.clone(), third.clone());
        let waiting = tokio::spawn(async move { g2.acquire(&t2, far(), None).await.map(|_| ()) });
        while g.load().1 < 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(g.load(), (2, 1));
        drop(guard);
        assert_eq!(waiting.await.expect("task"), Err(NotSent::Answered));
        // Once one of the slow requests ends, a new request goes out at once.
        drop(permits.pop());
        let fresh = Answered::default();
        let _p = g.acquire(&fresh, far(), None).await.expect("sent");
        assert_eq!(g.load(), (2, 0));
    }

    #[tokio::test]
    async fn a_waiter_that_cannot_make_its_deadline_is_dropped_as_overloaded() {
        let g = gate(1, 1);
        g.record_service_time(Duration::from_secs(10));
        let a = Answered::default();
        let p = g.acquire(&a, far(), None).await.expect("first");
        let (g2, a2) = (g.clone(), a.clone());
        // Its deadline is 60 s away but the node needs 10 s per answer: fine, it waits...
        let ok = tokio::spawn(async move { g2.acquire(&a2, far(), None).await.map(|_| ()) });
        while g.load().1 < 1 {
            tokio::task::yield_now().await;
        }
        // ...while one whose deadline is 1 s away can no longer make it once a place frees.
        let (g3, a3) = (g.clone(), a.clone());
        let soon = Instant::now() + Duration::from_secs(1);
        let late = tokio::spawn(async move { g3.acquire(&a3, soon, None).await.map(|_| ()) });
        while g.load().1 < 2 {
            tokio::task::yield_now().await;
        }
        drop(p);
        assert_eq!(ok.await.expect("task"), Ok(()));
        let r = late.await.expect("task");
        assert!(matches!(r, Err(NotSent::Overloaded { .. })), "{r:?}");
        assert_eq!(g.dropped_overloaded.load(Ordering::Relaxed), 1);
    }

    /// Starts an `acquire` on a task and returns once the request waits in the gate.
    async fn waiting(
        g: &Arc<NodeGate>,
        answered: &Answered,
        spare: Option<&Answered>,
    ) -> tokio::task::JoinHandle<Result<Permit, NotSent>> {
        let before = g.load().1;
        let (g2, a2, s2) = (g.clone(), answered.clone(), spare.cloned());
        let task = tokio::spawn(async move { g2.acquire(&a2, far(), s2.as_ref()).await });
        while g.load().1 <= before {
            tokio::task::yield_now().await;
        }
        task
    }

    #[tokio::test]
    async fn spares_go_out_at_once_only_to_a_node_that_is_not_loaded() {
        // In-flight limit 16: spares go out while fewer than 2 requests are on the wire.
        let g = gate(16, 16);
        assert_eq!(g.limits().spare_below(), 2);
        let (a, wanted) = (Answered::default(), Answered::default());
        let s1 = g
            .acquire(&a, far(), Some(&wanted))
            .await
            .expect("idle: the spare goes out");
        let n1 = g.acquire(&a, far(), None).await.expect("needed");
        assert_eq!(g.load(), (2, 0));
        // Two on the wire: a further spare waits, and is dropped unsent once its sign request
        // is answered.
        let other = Answered::default();
        let guard = other.guard();
        let spare = waiting(&g, &other, Some(&Answered::default())).await;
        // Needed requests never wait for spares.
        let n2 = g.acquire(&a, far(), None).await.expect("needed");
        assert_eq!(g.load(), (3, 1));
        drop(guard);
        assert!(matches!(spare.await, Ok(Err(NotSent::Answered))));
        assert_eq!(g.load(), (3, 0));
        // Once the load falls below the mark, a waiting spare goes out.
        let spare = waiting(&g, &Answered::default(), Some(&Answered::default())).await;
        drop(s1);
        assert_eq!(g.load(), (2, 1), "two still on the wire");
        drop(n1);
        assert!(matches!(spare.await, Ok(Ok(_))));
        drop(n2);
    }

    #[tokio::test]
    async fn a_stalled_request_counts_in_the_expected_answer() {
        let g = gate(128, 128);
        g.record_service_time(Duration::from_millis(5));
        let _p = g
            .acquire(&Answered::default(), far(), None)
            .await
            .expect("sent");
        tokio::time::sleep(Duration::from_millis(60)).await;
        let expected = g.expected_answer().expect("answered before");
        assert!(expected >= Duration::from_millis(60), "{expected:?}");
    }

    #[tokio::test]
    async fn saturation_is_load_not_slowness() {
        // One place: full and a request waiting = saturated.
        let g = gate(1, 1);
        let p = g
            .acquire(&Answered::default(), far(), None)
            .await
            .expect("sent");
        assert!(!g.saturated(), "nothing waits");
        let queued = waiting(&g, &Answered::default(), None).await;
        assert!(g.saturated());
        drop(p);
        assert!(matches!(queued.await, Ok(Ok(_))));
        // Waiting behind a slow node's answered requests (max_unneeded) is not saturation.
        let g = gate(100, 1);
        let slow = Answered::default();
        let _p = g.acquire(&slow, far(), None).await.expect("sent");
        drop(slow.guard());
        let fresh = Answered::default();
        let queued = waiting(&g, &fresh, None).await;
        assert!(!g.saturated());
        drop(fresh.guard());
        assert!(matches!(queued.await, Ok(Err(NotSent::Answered))));
    }

    #[tokio::test]
    async fn spares_wait_behind_needed_requests_until_wanted() {
        let g = gate(1, 1);
        let p = g
            .acquire(&Answered::default(), far(), None)
            .await
            .expect("first");
        // A spare arrives first, then a needed request: the needed one gets the place.
        let wanted = Answered::default();
        let spare = waiting(&g, &Answered::default(), Some(&wanted)).await;
        let needed = waiting(&g, &Answered::default(), None).await;
        drop(p);
        let p = needed.await.expect("task").expect("granted");
        assert_eq!(g.load(), (1, 1), "the spare still waits");
        // Wanted now (a needed node failed): it is next, ahead of later needed requests.
        wanted.set();
        let later = waiting(&g, &Answered::default(), None).await;
        drop(p);
        let p = spare.await.expect("task").expect("granted");
        assert_eq!(g.load(), (1, 1), "the later needed request waits");
        drop(p);
        assert!(matches!(later.await, Ok(Ok(_))));
    }

    #[tokio::test]
    async fn a_spare_wanted_while_the_node_has_room_goes_out_at_once() {
        // Room for needed requests but not for spares (in-flight limit 8: spares only to an
        // idle node; one request on the wire).
        let g = gate(8, 8);
        let _p1 = g
            .acquire(&Answered::default(), far(), None)
            .await
            .expect("1");
        let wanted = Answered::default();
        let spare = waiting(&g, &Answered::default(), Some(&wanted)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(g.load(), (1, 1), "not sent while not wanted");
        wanted.set();
        assert!(matches!(spare.await, Ok(Ok(_))));
    }

    #[tokio::test]
    async fn requests_are_shed_only_behind_queues_that_cannot_clear_in_time() {
        let deadline = Duration::from_secs(2);
        let gates: Vec<Arc<NodeGate>> = (0..4).map(|_| gate(1, 4)).collect();
        let all = || gates.iter().map(|g| g.as_ref());
        // Every node's recent answers took 3 s, longer than the deadline (a burst whose answers
        // ran to their timeout), but each can take a request at once: admitted (and sending
        // it is what brings the estimate up to date).
        for g in &gates {
            g.record_service_time(Duration::from_secs(3));
        }
        assert_eq!(shed_for_load(all(), 3, deadline), None);
        // Two nodes busy with a request on the wire and one waiting each: the third-soonest
        // of the four is now a busy one, expected after (1 waiting + 1) / 1 on the wire + 1 =
        // 3 answer times of 3 s: 9 s; shed, retry in 7 s.
        let mut held = Vec::new();
        let mut waiting = Vec::new();
        for g in &gates[..2] {
            let a = Answered::default();
            held.push(g.acquire(&a, far(), None).await.expect("sent"));
            let (g2, a2) = (g.clone(), a.clone());
            waiting.push(tokio::spawn(async move {
                g2.acquire(&a2, far(), None).await.map(|_| ())
            }));
            while g.load().1 < 1 {
                tokio::task::yield_now().await;
            }
        }
        assert!(!gates[0].can_take_now() && gates[2].can_take_now());
        assert_eq!(
            shed_for_load(all(), 3, deadline),
            Some(Duration::from_secs(7))
        );
        // With t = 2 the two free nodes suffice.
        assert_eq!(shed_for_load(all(), 2, deadline), None);
        // Fast nodes: a short queue clears in time, nothing is shed.
        for g in &gates {
            for _ in 0..64 {
                g.record_service_time(Duration::from_millis(10));
            }
        }
        assert_eq!(shed_for_load(all(), 3, deadline), None);
        // No t-th node at all: never shed here (the request fails on its own).
        assert_eq!(shed_for_load(all(), 5, deadline), None);
        assert_eq!(shed_for_load(all(), 0, deadline), None);
        drop(held);
        for w in waiting {
            w.await.expect("task").expect("sent once a place freed");
        }
    }
}
