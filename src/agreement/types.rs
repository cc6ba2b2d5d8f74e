//! Types shared by the consensus engine and the node that drives it.
//!
//! Members of an instance are the operators holding shares of the validator, numbered
//! `0..n` in the order of their share index in `cluster.json`; the quorum is the validator's
//! threshold `t`.

use serde::{Deserialize, Serialize};

use crate::bls::PublicKeyBytes;

/// A 32-byte signing root.
pub type Root = [u8; 32];

/// The slashable duty an instance decides the root for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Duty {
    /// A block proposal (BLOCK and BLOCK_V2 requests).
    Block {
        /// The block's slot.
        slot: u64,
    },
    /// An attestation (ATTESTATION requests).
    Attestation {
        /// The attestation's target epoch.
        target_epoch: u64,
    },
}

/// One consensus instance: a validator (its GROUP public key) and a duty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstanceId {
    /// The validator's group public key.
    pub validator: PublicKeyBytes,
    /// The duty.
    pub duty: Duty,
}

/// Who takes part in an instance, from this node's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Members {
    /// Number of members (the validator's share count).
    pub n: usize,
    /// Matching messages that make a quorum (the validator's threshold t, t > n/2).
    pub quorum: usize,
    /// This node's member index in `0..n`.
    pub me: usize,
    /// Domain separation mixed into every signed message (the cluster hash), so that a message
    /// of one cluster is never valid in another.
    pub domain: [u8; 32],
}

/// Timers of an instance, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Length of round 1; round r lasts `round_ms * 2^(r-1)`, capped at `max_round_ms`.
    pub round_ms: u64,
    /// Longest round.
    pub max_round_ms: u64,
}

/// Signs this node's messages and checks other members' signatures (the node's peer TLS
/// identity key; a member is known by its certificate).
pub trait Authenticator: Send + Sync {
    /// Signature by this node over `bytes`.
    fn sign(&self, bytes: &[u8]) -> Vec<u8>;
    /// Whether `signature` over `bytes` was made by member `member`.
    fn verify(&self, member: usize, bytes: &[u8], signature: &[u8]) -> bool;
}

/// What a message says (QBFT-style steps; see `engine.rs` for the rules).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// Round 1: the root the sender's own client asked for; round r >= 2: the root the round's
    /// leader proposed with a valid justification.
    Prepare {
        /// The root.
        #[serde(with = "hex_root")]
        root: Root,
    },
    /// The sender saw a quorum of prepares for `root` in this round.
    Commit {
        /// The root.
        #[serde(with = "hex_root")]
        root: Root,
    },
    /// The sender's round timer expired: it moves to `round` (the message's round).
    RoundChange {
        /// The highest round in which the sender saw a quorum of prepares, and their root.
        prepared: Option<(u32, RootHex)>,
        /// The quorum of signed prepares behind `prepared` (empty when `prepared` is None).
        proof: Vec<SignedMessage>,
        /// The root the sender's own client asked for, if any.
        input: Option<RootHex>,
    },
    /// The leader of round r >= 2 proposes `root`, justified by a quorum of round changes for
    /// this round (and the prepares of the highest prepared round among them).
    Proposal {
        /// The root.
        #[serde(with = "hex_root")]
        root: Root,
        /// The signed round changes and prepares that justify it.
        justification: Vec<SignedMessage>,
    },
    /// A quorum of signed commits for one round and root: anyone can check it and decide.
    Decided {
        /// The decided root.
        #[serde(with = "hex_root")]
        root: Root,
        /// The quorum of commits.
        commits: Vec<SignedMessage>,
    },
}

/// A root that serializes as `0x` hex inside tuples and options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RootHex(#[serde(with = "hex_root")] pub Root);

/// A consensus message before signing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The instance.
    pub instance: InstanceId,
    /// The round (1-based).
    pub round: u32,
    /// The sender's member index.
    pub from: u16,
    /// What it says.
    pub body: Body,
}

/// A message and its sender's signature over [`Message::signing_bytes`] (`engine.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMessage {
    /// The message.
    pub message: Message,
    /// The signature (hex on the wire).
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
}

/// The outcome of an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The decided root.
    #[serde(with = "hex_root")]
    pub root: Root,
    /// The round it was decided in.
    pub round: u32,
    /// A quorum of signed commits for `root` in `round`.
    pub commits: Vec<SignedMessage>,
}

/// What an engine call asks the driver to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this message to every other member. Before sending any `Send` of a call's outputs,
    /// the driver must durably store [`Instance::persisted`](super::Instance::persisted), so
    /// that a restarted node never votes differently in a round it already voted in.
    Send(SignedMessage),
    /// Send this message to these members only (member indices; same storage rule as `Send`).
    SendTo(Vec<u16>, SignedMessage),
    /// The instance decided (emitted once).
    Decided(Decision),
}

/// The part of an instance's state that must survive a restart (what this node has sent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    /// The highest round this node has entered.
    pub round: u32,
    /// This node's own messages, in the order sent (re-sent after a restart where needed).
    pub sent: Vec<SignedMessage>,
    /// The decision, once there is one.
    pub decision: Option<Decision>,
}

mod hex_root {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(root: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0x{}", hex::encode(root)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let raw = s.strip_prefix("0x").unwrap_or(&s);
        let bytes = hex::decode(raw).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("a root is 32 bytes"))
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0x{}", hex::encode(bytes)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        let raw = s.strip_prefix("0x").unwrap_or(&s);
        hex::decode(raw).map_err(serde::de::Error::custom)
    }
}
