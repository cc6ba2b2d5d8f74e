//! Agreement between the signer nodes of a cluster on ONE signing root per slashable duty
//! (validator + slot for blocks, validator + target epoch for attestations) before any node
//! returns a partial signature for it, so that validator clients racing different messages for
//! the same duty through different combiners never split the vote.
//!
//! `types.rs`: the instance identity, the messages and the signing interface; `engine.rs`: one
//! consensus instance as a pure state machine (no I/O, no clock: time is passed in), so that the
//! protocol can be simulated deterministically. Around it, in the node: `auth.rs` (messages
//! signed with the node's peer TLS identity, members' certificates checked against the
//! fingerprints the cluster trusts), `wire.rs` (`POST /api/v1/cluster/agreement` batches in and
//! out), `driver.rs` (instances, timers, storage, waiting requests) and `gate.rs` (the sign
//! path's check).

pub mod auth;
pub mod driver;
pub mod engine;
pub mod gate;
pub mod types;
pub mod wire;

pub use engine::{verify_decision, Instance, Rejected};
pub use types::{
    Authenticator, Body, Decision, Duty, InstanceId, Members, Message, Output, Persisted, Root,
    RootHex, SignedMessage, Timing,
};
