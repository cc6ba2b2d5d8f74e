//! How requests to signer nodes outlive the combiner's answer.
//!
//! The combiner answers a sign request by its deadline, but each node request runs on a task of
//! its own until the node answers or [`node_request_timeout`] passes. That timeout is longer
//! than the deadline so that a node slower than the deadline (a far region, a loaded machine)
//! still delivers its partial: the answer is counted (as late, [`Answered`]), the node is seen
//! to work, and its keep-alive connection goes back to the pool for the next request. Ending
//! the request at the deadline instead would close the connection every time, so each new
//! request to that node would need a new TCP and TLS handshake (about three round trips),
//! never finish one, and no partial of the node would ever arrive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long one request to a node may run, connection set-up included: the connect timeout
/// (a new connection may take that long) plus the deadline (the time a request may take on a
/// made connection).
pub fn node_request_timeout(deadline: Duration, connect_timeout: Duration) -> Duration {
    connect_timeout.saturating_add(deadline)
}

/// Whether the combiner has answered the sign request a node request belongs to; set when the
/// [`AnsweredGuard`] of [`Answered::guard`] drops (the combining function returned, whatever
/// it returned). Tasks can await it ([`Answered::wait`]).
#[derive(Debug, Clone, Default)]
pub struct Answered(Arc<AnsweredInner>);

#[derive(Debug, Default)]
struct AnsweredInner {
    set: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Answered {
    /// Whether the request has been answered.
    pub fn is_set(&self) -> bool {
        self.0.set.load(Ordering::Acquire)
    }

    /// Resolves once the request has been answered.
    pub async fn wait(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }

    /// A guard that marks the request answered when dropped.
    pub fn guard(&self) -> AnsweredGuard {
        AnsweredGuard(self.clone())
    }

    /// Sets the flag now (and wakes its waiters). The same type serves as a sign request's
    /// "spares wanted" flag ([`super::gate`]).
    pub fn set(&self) {
        if !self.0.set.swap(true, Ordering::AcqRel) {
            self.0.notify.notify_waiters();
        }
    }
}

/// Marks its request answered on drop.
#[derive(Debug)]
pub struct AnsweredGuard(Answered);

impl Drop for AnsweredGuard {
    fn drop(&mut self) {
        self.0.set();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_marks_answered_when_dropped() {
        let a = Answered::default();
        let seen_by_task = a.clone();
        let guard = a.guard();
        assert!(!seen_by_task.is_set());
        drop(guard);
        assert!(seen_by_task.is_set());
    }

    #[test]
    fn node_requests_outlive_the_deadline_by_the_connect_timeout() {
        let d = Duration::from_millis(2000);
        assert_eq!(
            node_request_timeout(d, Duration::from_millis(10_000)),
            Duration::from_millis(12_000)
        );
        assert_eq!(node_request_timeout(d, d), Duration::from_millis(4000));
    }
}
