//! One consensus instance as a pure state machine. API fixed; the rules are being written.

use std::sync::Arc;

use super::types::{
    Authenticator, Decision, InstanceId, Members, Message, Output, Persisted, Root, SignedMessage,
    Timing,
};

/// Why a received message was not taken into account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The signature does not verify for the claimed sender.
    #[error("bad signature")]
    BadSignature,
    /// The sender index is not a member.
    #[error("sender is not a member")]
    NotAMember,
    /// The message belongs to another instance.
    #[error("message of another instance")]
    WrongInstance,
    /// The message breaks a protocol rule (unjustified proposal, bad proof, ...).
    #[error("invalid message: {0}")]
    Invalid(&'static str),
}

/// One instance.
pub struct Instance {
    id: InstanceId,
    members: Members,
    timing: Timing,
    auth: Arc<dyn Authenticator>,
}

impl Instance {
    /// A fresh instance (created on the first request or the first message for it).
    pub fn new(
        id: InstanceId,
        members: Members,
        timing: Timing,
        auth: Arc<dyn Authenticator>,
        now_ms: u64,
    ) -> Self {
        let _ = now_ms;
        Self {
            id,
            members,
            timing,
            auth,
        }
    }

    /// An instance this node took part in before a restart.
    pub fn restore(
        id: InstanceId,
        members: Members,
        timing: Timing,
        auth: Arc<dyn Authenticator>,
        persisted: Persisted,
        now_ms: u64,
    ) -> Self {
        let _ = persisted;
        Self::new(id, members, timing, auth, now_ms)
    }

    /// This node's own client asked for `root` (only the first call counts).
    pub fn propose(&mut self, root: Root, now_ms: u64) -> Vec<Output> {
        let _ = (
            root,
            now_ms,
            &self.id,
            &self.members,
            &self.timing,
            &self.auth,
        );
        unimplemented!("engine rules are being written")
    }

    /// A message from another member.
    ///
    /// # Errors
    /// [`Rejected`] when the message is not taken into account.
    pub fn receive(&mut self, msg: SignedMessage, now_ms: u64) -> Result<Vec<Output>, Rejected> {
        let _ = (msg, now_ms);
        unimplemented!("engine rules are being written")
    }

    /// Time passed: round timers.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Output> {
        let _ = now_ms;
        unimplemented!("engine rules are being written")
    }

    /// When [`Instance::tick`] must be called next (None once decided).
    pub fn next_deadline(&self) -> Option<u64> {
        unimplemented!("engine rules are being written")
    }

    /// The decision, once there is one.
    pub fn decision(&self) -> Option<&Decision> {
        unimplemented!("engine rules are being written")
    }

    /// The state to store durably before sending this call's messages.
    pub fn persisted(&self) -> Persisted {
        unimplemented!("engine rules are being written")
    }

    /// The current round.
    pub fn round(&self) -> u32 {
        unimplemented!("engine rules are being written")
    }
}

impl Message {
    /// The bytes a member signs: a domain tag, `domain` (the cluster hash) and a canonical
    /// encoding of the message.
    pub fn signing_bytes(&self, domain: &[u8; 32]) -> Vec<u8> {
        let _ = domain;
        unimplemented!("engine rules are being written")
    }
}

/// Whether `decision` carries a valid quorum of commits for `id` (a decision learned from a
/// peer or read back from storage).
pub fn verify_decision(
    id: &InstanceId,
    members: &Members,
    auth: &dyn Authenticator,
    decision: &Decision,
) -> bool {
    let _ = (id, members, auth, decision);
    unimplemented!("engine rules are being written")
}
