//! Distributed key generation: operators create validator keys together so that no machine
//! ever holds a whole key (`dvsigner dkg`).
//!
//! Protocol (joint Feldman VSS, Pedersen 1991 / Gennaro et al. 2007 "Secure distributed key
//! generation for discrete-log based cryptosystems"), per validator, run by the `n` operators
//! of a [`CeremonyDefinition`], each both dealer and receiver:
//!
//! 1. **keys**: every operator publishes one X25519 public key per peer (the peer encrypts the
//!    shares it deals to us under it).
//! 2. **dealings**: dealer `i` draws a random degree `t - 1` polynomial `f_i`
//!    ([`crate::threshold::Polynomial`]), publishes its Feldman commitments `C_{i,k} = a_{i,k}
//!    G1` and a proof of possession of `a_{i,0}` (a BLS signature by `a_{i,0}` over
//!    [`pop_message`], which binds ceremony id, dealer and validator index: the rogue-key
//!    defence, since a dealer cannot choose `C_{i,0}` as a function of the others'), and for
//!    every peer `j` the sealed values `f_i(j)` ([`seal`]: X25519, HKDF-SHA256,
//!    ChaCha20-Poly1305).
//! 3. **complaints**: every receiver checks the proofs and `f_i(j) G1 = sum_k j^k C_{i,k}` and
//!    publishes its complaints. A named dealer aborts the ceremony (default) or, with
//!    `"on_misbehaviour": "disqualify"`, is left out of the qualified set by everyone.
//! 4. **deposit signatures**: group key `= sum_{i in Q} C_{i,0}`, operator `j`'s share
//!    `= sum_{i in Q} f_i(j)`, group commitments `= sum_{i in Q} C_i` (so `cluster.json`'s
//!    commitments verify every share); each operator publishes the hash of the resulting
//!    `cluster.json` and its partial signatures over every deposit message; partials are
//!    verified against the share keys and combined ([`crate::threshold::combine`]).
//! 5. **confirmation**: operators exchange the hashes of `cluster.json` and of the deposit
//!    file; any difference aborts.
//!
//! Transport: every operator serves its own messages over HTTPS with mutual TLS
//! (`GET /dkg/v1/round/{n}`) and pulls everyone else's, so a message's author is the server
//! that was authenticated (pinned fingerprint or CA from the definition). A failing operator
//! publishes the reason (`409`) so peers stop with its words instead of a timeout.
//!
//! `dvsigner reshare` ([`reshare`]) reuses this machinery to move existing validators to a new
//! operator set and/or threshold without changing their group keys.
//!
//! Invariants: the group secret is never computed anywhere; polynomial coefficients and
//! received shares live in zeroizing types; an operator writes nothing until every operator
//! confirmed identical results, and then writes through a staging directory renamed into place.

mod ceremony;
pub mod definition;
pub mod deposit;
mod error;
pub mod output;
pub mod reshare;
pub mod seal;
pub mod wire;

pub use ceremony::{pop_message, run, CeremonyOutput, Fault, Linger, Participant, Timeouts};
pub use definition::{CeremonyDefinition, CeremonyOperator, OnMisbehaviour};
pub use deposit::DepositDataEntry;
pub use error::Error;
pub use reshare::{ReshareDefinition, ReshareOutput, ReshareParticipant};
