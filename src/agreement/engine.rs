//! One consensus instance as a pure state machine: QBFT with a leaderless first round.
//!
//! Members `0..n`, quorum `Q` (the validator's threshold, `Q > n/2`).
//!
//! - Round 1 has no leader: a member whose own client asks for a root (`propose`) while it is
//!   still in round 1 and has sent nothing in it yet sends `Prepare(1, root)`.
//! - Round `r >= 2` has the leader `(seed + r) mod n` (seed from SHA-256 of the instance id);
//!   members prepare in it only the root of a valid `Proposal(r, root)` from that leader.
//! - `Q` matching prepares of the current round from distinct members: the member is prepared
//!   on `(r, root)` (the prepares are the proof) and sends `Commit(r, root)`.
//! - `Q` matching commits (one round, one root, distinct members): decided; the member sends
//!   `Decided { root, commits }`, which decides any member that checks it.
//! - Entering round `r` arms a timer of `min(round_ms * 2^(r-1), max_round_ms)`; on expiry the
//!   member enters `r + 1` and sends `RoundChange(r + 1, prepared, proof, input)`. From round
//!   2 on the timer only moves the member on once `Q` members are known to be in the round
//!   (until then an expiry re-sends its round change); it restarts when the `Q`-th shows up.
//! - Round changes for rounds above the current one from `f + 1 = 2Q - n` distinct members
//!   (at least one of them honest): the member jumps to the highest round that many of them
//!   have reached and sends its round change for it.
//! - The leader of `r`, holding `Q` valid round changes for `r`, proposes the root of the
//!   highest prepared round among them (justified by the round changes and that round's
//!   prepares), or else its own input, or else the input most of them carry (ties: smallest).
//!
//! Each honest member sends at most one message per (round, step). Everything received,
//! including nested proofs, justifications and commits, is signature-checked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::types::{
    Authenticator, Body, Decision, Duty, InstanceId, Members, Message, Output, Persisted, Root,
    RootHex, SignedMessage, Timing,
};

/// Domain tag at the start of every signed agreement message.
const SIGNING_TAG: &[u8] = b"dvsigner-agreement-v1";

/// Messages for rounds more than this far above the current round are ignored (bounded memory).
pub const MAX_ROUNDS_AHEAD: u32 = 64;

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

/// Step codes in the signed encoding and in the (round, step) bookkeeping of own messages.
const STEP_PREPARE: u8 = 1;
const STEP_COMMIT: u8 = 2;
const STEP_ROUND_CHANGE: u8 = 3;
const STEP_PROPOSAL: u8 = 4;
const STEP_DECIDED: u8 = 5;

fn step_of(body: &Body) -> u8 {
    match body {
        Body::Prepare { .. } => STEP_PREPARE,
        Body::Commit { .. } => STEP_COMMIT,
        Body::RoundChange { .. } => STEP_ROUND_CHANGE,
        Body::Proposal { .. } => STEP_PROPOSAL,
        Body::Decided { .. } => STEP_DECIDED,
    }
}

/// What the members sent in one round (first message per member and step; own ones included).
#[derive(Default)]
struct RoundState {
    prepares: BTreeMap<u16, SignedMessage>,
    commits: BTreeMap<u16, SignedMessage>,
    round_changes: BTreeMap<u16, SignedMessage>,
    /// The accepted (valid) proposal of the round's leader.
    proposal: Option<SignedMessage>,
}

/// The highest round in which this member saw a quorum of prepares.
#[derive(Clone)]
struct Prepared {
    round: u32,
    root: Root,
    /// The quorum of prepares. None only after a restart that lost it (the member had sent
    /// `Commit(round, root)` but no round change carrying the proof): then it sends no round
    /// change until it holds a proof for a round at least as high.
    proof: Option<Vec<SignedMessage>>,
}

/// One instance.
pub struct Instance {
    id: InstanceId,
    members: Members,
    timing: Timing,
    auth: Arc<dyn Authenticator>,
    /// `seed mod n` of the leader rotation.
    leader_offset: usize,
    round: u32,
    deadline: u64,
    input: Option<Root>,
    prepared: Option<Prepared>,
    rounds: BTreeMap<u32, RoundState>,
    sent: Vec<SignedMessage>,
    sent_steps: BTreeSet<(u32, u8)>,
    decision: Option<Decision>,
    /// After the decision: per member, the highest round of theirs answered with `Decided`.
    answered: Vec<u32>,
    /// After a restore: re-send the latest own messages at this time (the next tick).
    resend_at: Option<u64>,
    /// Whether `Q` members are known to be in the current round (or above): only then does
    /// its timer move the member on (see [`Instance::tick`]).
    started: bool,
    /// Members this node's transport currently cannot reach (set by the driver before each
    /// call). Used only to end rounds early that cannot succeed: a round-1 quorum that would
    /// need them, a round whose leader is one of them. Like every timer matter, it never
    /// affects safety, only when a member moves on.
    unreachable: BTreeSet<u16>,
    /// Per member, this node's measured round trip to it in ms (set by the driver before each
    /// call; `None` unknown, and for this member). Used only to leave early a round whose
    /// leader is too far away to finish it in the round's time (see
    /// [`Instance::leader_too_far`]): a timer matter, never a safety one.
    round_trips: Vec<Option<u64>>,
    /// When round 1 started (the instance's creation).
    round_one_start: u64,
    /// Round-1 prepares for two different roots were seen: round 1 keeps its ordinary length
    /// even when [`Instance::lengthen_round_one`] gave it more.
    round_one_contested: bool,
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
        let n = members.n.max(1);
        let digest = Sha256::digest(instance_bytes(&id));
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&digest[..8]);
        let leader_offset = (u64::from_be_bytes(seed) % n as u64) as usize;
        let mut instance = Self {
            id,
            members,
            timing,
            auth,
            leader_offset,
            round: 1,
            deadline: 0,
            input: None,
            prepared: None,
            rounds: BTreeMap::new(),
            sent: Vec::new(),
            sent_steps: BTreeSet::new(),
            decision: None,
            answered: vec![0; members.n],
            resend_at: None,
            started: true,
            unreachable: BTreeSet::new(),
            round_trips: Vec::new(),
            round_one_start: now_ms,
            round_one_contested: false,
        };
        instance.deadline = instance.round_deadline(1, now_ms);
        instance
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
        let mut instance = Self::new(id, members, timing, auth, now_ms);
        let me = instance.me();
        let mut round = persisted.round.max(1);
        let mut lock: Option<Prepared> = None;
        for sm in persisted.sent {
            let m = &sm.message;
            if m.instance != id || m.from != me || m.round == 0 {
                continue;
            }
            let step = step_of(&m.body);
            if !instance.sent_steps.insert((m.round, step)) {
                continue;
            }
            round = round.max(m.round);
            match &m.body {
                Body::Prepare { root } => {
                    if m.round == 1 && instance.input.is_none() {
                        instance.input = Some(*root);
                    }
                    instance.state(m.round).prepares.insert(me, sm.clone());
                }
                Body::Commit { root } => {
                    if lock.as_ref().is_none_or(|p| m.round > p.round) {
                        lock = Some(Prepared {
                            round: m.round,
                            root: *root,
                            proof: None,
                        });
                    }
                    instance.state(m.round).commits.insert(me, sm.clone());
                }
                Body::RoundChange {
                    prepared,
                    proof,
                    input,
                } => {
                    if instance.input.is_none() {
                        instance.input = input.map(|r| r.0);
                    }
                    if let Some((pr, RootHex(pv))) = prepared {
                        let better = match &lock {
                            None => true,
                            Some(p) => *pr > p.round || (*pr == p.round && p.proof.is_none()),
                        };
                        if better && !proof.is_empty() {
                            lock = Some(Prepared {
                                round: *pr,
                                root: *pv,
                                proof: Some(proof.clone()),
                            });
                        }
                    }
                    if provable(&m.body) {
                        instance.state(m.round).round_changes.insert(me, sm.clone());
                    }
                }
                Body::Proposal { .. } => {
                    instance.state(m.round).proposal = Some(sm.clone());
                }
                Body::Decided { .. } => {}
            }
            instance.sent.push(sm);
        }
        instance.prepared = lock;
        instance.round = round;
        instance.deadline = instance.round_deadline(round, now_ms);
        instance.started = round == 1;
        if let Some(decision) = persisted.decision {
            if verify_decision(&id, &members, instance.auth.as_ref(), &decision) {
                instance.decision = Some(decision);
            }
        }
        if instance.decision.is_some() {
            instance.rounds.clear();
        }
        if !instance.sent.is_empty() {
            instance.resend_at = Some(now_ms);
        }
        instance
    }

    /// The members this node's transport cannot reach now (see the field's notes); the
    /// driver sets it before each call.
    pub fn set_unreachable(&mut self, members: impl IntoIterator<Item = u16>) {
        let me = self.me();
        self.unreachable = members.into_iter().filter(|&m| m != me).collect();
    }

    /// This node's measured round trips (ms) to each member, by member index (`None`: not
    /// measured); the driver sets them before each call. The entry for this member is ignored.
    pub fn set_round_trips(&mut self, per_member: impl IntoIterator<Item = Option<u64>>) {
        let me = usize::from(self.me());
        self.round_trips = per_member
            .into_iter()
            .enumerate()
            .map(|(m, rtt)| rtt.filter(|_| m != me))
            .collect();
    }

    /// Lets round 1 last up to `len_ms` from its start while every round-1 prepare seen names
    /// one root (timer matter only). Round 1 is the one that can decide within a request's
    /// timeout over long links; under a burst its messages queue behind each other and arrive
    /// later than the round trips promise. Once two roots show up (clients racing) the round
    /// is back to its ordinary length: a split with a member silently gone must reach round 2
    /// in time.
    pub fn lengthen_round_one(&mut self, len_ms: u64) {
        if self.round == 1 && self.decision.is_none() && !self.round_one_contested {
            self.deadline = self
                .deadline
                .max(self.round_one_start.saturating_add(len_ms));
        }
    }

    /// Ends a lengthened round 1 at its ordinary length once round-1 prepares disagree.
    fn note_round_one_contest(&mut self) {
        if self.round != 1 || self.round_one_contested {
            return;
        }
        let mut roots = self
            .rounds
            .get(&1)
            .into_iter()
            .flat_map(|s| s.prepares.values())
            .filter_map(|sm| match sm.message.body {
                Body::Prepare { root } => Some(root),
                _ => None,
            });
        let Some(first) = roots.next() else {
            return;
        };
        if roots.any(|r| r != first) {
            self.round_one_contested = true;
            let ordinary = self.round_deadline(1, self.round_one_start);
            self.deadline = self.deadline.min(ordinary);
        }
    }

    /// This node's own client asked for `root` (only the first call counts).
    pub fn propose(&mut self, root: Root, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        if self.input.is_some() || self.decision.is_some() {
            return out;
        }
        self.input = Some(root);
        let nothing_sent_in_1 = !self.sent.iter().any(|sm| sm.message.round == 1);
        if self.round == 1 && nothing_sent_in_1 {
            self.send(1, Body::Prepare { root }, &mut out);
        }
        self.advance(now_ms, &mut out);
        out
    }

    /// A message from another member.
    ///
    /// The sender's signature is checked only right before the message is acted on (stored,
    /// answered): the cheap rules come first, so that what is refused or ignored anyway (late
    /// prepares and commits of a decided instance, duplicates, messages of past rounds) costs
    /// no signature check. A `Decided` message is taken on its commits' signatures alone
    /// (checked, [`verify_decision`]): its own signature adds nothing to them.
    ///
    /// # Errors
    /// [`Rejected`] when the message is not taken into account.
    pub fn receive(&mut self, msg: SignedMessage, now_ms: u64) -> Result<Vec<Output>, Rejected> {
        let m = &msg.message;
        if m.instance != self.id {
            return Err(Rejected::WrongInstance);
        }
        let from = usize::from(m.from);
        if from >= self.members.n {
            return Err(Rejected::NotAMember);
        }
        if m.from == self.me() {
            return Err(Rejected::Invalid("own message"));
        }
        if m.round == 0 {
            return Err(Rejected::Invalid("round 0"));
        }
        let mut out = Vec::new();
        if self.decision.is_some() {
            // A member that sends a round change, or messages of a round above the decision's,
            // has missed the decided message: answer with it (round changes are re-sent once
            // per round length at most; other messages once per member and round). Late
            // prepares and commits of the decision round crossed the broadcast decision.
            let decided_round = self.decision.as_ref().map_or(0, |d| d.round);
            let floor = self.answered[from].max(decided_round);
            let answer = match m.body {
                Body::RoundChange { .. } => true,
                Body::Decided { .. } => false,
                _ => m.round > floor,
            };
            if answer {
                if !self.verify(&msg) {
                    return Err(Rejected::BadSignature);
                }
                self.answered[from] = self.answered[from].max(m.round);
                self.send_decided(&mut out);
            }
            return Ok(out);
        }
        if let Body::Decided { root, commits } = &m.body {
            let decision = Decision {
                root: *root,
                round: m.round,
                commits: commits.clone(),
            };
            if !verify_decision(&self.id, &self.members, self.auth.as_ref(), &decision) {
                return Err(Rejected::Invalid(
                    "decision without a valid quorum of commits",
                ));
            }
            self.decide(decision, false, &mut out);
            return Ok(out);
        }
        if m.round > self.round.saturating_add(MAX_ROUNDS_AHEAD) {
            return Err(Rejected::Invalid("round too far ahead"));
        }
        let round = m.round;
        let domain = self.members.domain;
        match &m.body {
            Body::Commit { .. } => {
                self.admit(self.held(round, |s| &s.commits, m.from), &msg)?;
                let slot = &mut self.state(round).commits;
                insert_first(slot, m.from, &msg, &domain)?;
            }
            Body::Prepare { .. } => {
                if round < self.round {
                    return Err(Rejected::Invalid("prepare of a past round"));
                }
                self.admit(self.held(round, |s| &s.prepares, m.from), &msg)?;
                let slot = &mut self.state(round).prepares;
                insert_first(slot, m.from, &msg, &domain)?;
            }
            Body::RoundChange {
                prepared, proof, ..
            } => {
                if round < 2 {
                    return Err(Rejected::Invalid("round change to round 1"));
                }
                if round < self.round {
                    return Err(Rejected::Invalid("round change of a past round"));
                }
                self.admit(self.held(round, |s| &s.round_changes, m.from), &msg)?;
                match prepared {
                    None if !proof.is_empty() => {
                        return Err(Rejected::Invalid("proof without a prepared value"));
                    }
                    None => {}
                    Some((pr, RootHex(pv))) => {
                        if *pr == 0 || *pr >= round {
                            return Err(Rejected::Invalid("prepared round not below the round"));
                        }
                        if !self.is_prepare_quorum(*pr, pv, proof) {
                            return Err(Rejected::Invalid("prepared value without a valid proof"));
                        }
                    }
                }
                let slot = &mut self.state(round).round_changes;
                insert_first(slot, m.from, &msg, &domain)?;
                if let Some((pr, RootHex(pv))) = prepared {
                    self.adopt_proof(*pr, *pv, proof);
                }
            }
            Body::Proposal {
                root,
                justification,
            } => {
                if round < 2 {
                    return Err(Rejected::Invalid("proposal in round 1"));
                }
                if from != self.leader(round) {
                    return Err(Rejected::Invalid("proposal not from the round's leader"));
                }
                if round < self.round {
                    return Err(Rejected::Invalid("proposal of a past round"));
                }
                // The round's proposal is its leader's (checked above): a second one is a copy
                // or an equivocation.
                self.admit(
                    self.rounds.get(&round).and_then(|s| s.proposal.as_ref()),
                    &msg,
                )?;
                let highest = self
                    .check_justification(round, root, justification)
                    .map_err(Rejected::Invalid)?;
                if let Some((pr, proof)) = highest {
                    self.adopt_proof(pr, *root, &proof);
                }
                self.state(round).proposal = Some(msg.clone());
                if round > self.round {
                    self.enter_round(round, now_ms, false, &mut out);
                }
            }
            Body::Decided { .. } => {}
        }
        self.advance(now_ms, &mut out);
        Ok(out)
    }

    /// Time passed: round timers.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        if let Some(at) = self.resend_at {
            if now_ms >= at {
                self.resend_at = None;
                self.resend_latest(&mut out);
            }
        }
        if self.decision.is_some() {
            return out;
        }
        if now_ms >= self.deadline {
            if self.started {
                let next = self.round.saturating_add(1);
                self.enter_round(next, now_ms, true, &mut out);
            } else {
                // Fewer than Q members are known to be in this round: moving on would leave
                // them further behind (with capped round lengths two groups a round apart
                // would never meet). Re-send the own round change (it may have been lost) and
                // wait; the round's timer restarts once Q members are known to be in it.
                self.deadline = self.round_deadline(self.round, now_ms);
                let r = self.round;
                let own = self.sent.iter().find(|sm| {
                    sm.message.round == r && matches!(sm.message.body, Body::RoundChange { .. })
                });
                match own {
                    Some(sm) => out.push(Output::Send(sm.clone())),
                    // Entered through a proposal or restored: say it is here.
                    None => {
                        let body = self.round_change_body();
                        self.send(r, body, &mut out);
                    }
                }
            }
        }
        self.advance(now_ms, &mut out);
        out
    }

    /// When [`Instance::tick`] must be called next (None once decided).
    pub fn next_deadline(&self) -> Option<u64> {
        if self.decision.is_some() {
            return self.resend_at;
        }
        Some(match self.resend_at {
            Some(at) => at.min(self.deadline),
            None => self.deadline,
        })
    }

    /// The decision, once there is one.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    /// The state to store durably before sending this call's messages.
    pub fn persisted(&self) -> Persisted {
        Persisted {
            round: self.round,
            sent: self.sent.clone(),
            decision: self.decision.clone(),
        }
    }

    /// The current round.
    pub fn round(&self) -> u32 {
        self.round
    }

    // ----- rules -------------------------------------------------------------------------

    /// Applies every rule that the current state enables until none does.
    fn advance(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        // Each pass either sends a message for a new (round, step), enters a higher round or
        // decides, so the loop ends; the bound is a guard.
        self.note_round_one_contest();
        for _ in 0..16 {
            if self.decision.is_some() {
                return;
            }
            if let Some(decision) = self.commit_quorum() {
                self.decide(decision, true, out);
                return;
            }
            let r = self.round;
            let mut progressed = false;
            // Prepare the accepted proposal of the current round.
            if r >= 2 && !self.sent_steps.contains(&(r, STEP_PREPARE)) {
                let root = self.rounds.get(&r).and_then(|s| match &s.proposal {
                    Some(SignedMessage {
                        message:
                            Message {
                                body: Body::Proposal { root, .. },
                                ..
                            },
                        ..
                    }) => Some(*root),
                    _ => None,
                });
                if let Some(root) = root {
                    progressed |= self.send(r, Body::Prepare { root }, out);
                }
            }
            // A quorum of prepares in the current round: prepared, commit.
            if !self.sent_steps.contains(&(r, STEP_COMMIT)) {
                if let Some((root, proof)) = self.prepare_quorum(r) {
                    self.prepared = Some(Prepared {
                        round: r,
                        root,
                        proof: Some(proof),
                    });
                    progressed |= self.send(r, Body::Commit { root }, out);
                }
            }
            // Round 1 can no longer gather a quorum of prepares for any root (a split:
            // every member not yet heard from would not be enough): move on now rather than at
            // the timer. Timers never matter for safety; this only saves the rest of round 1.
            if r == 1 && self.round_one_lost() {
                self.enter_round(2, now_ms, true, out);
                progressed = true;
            }
            // Q members known to be in the current round: its timer starts now.
            if !self.started
                && (self.members_at_or_above(r) >= self.members.quorum
                    || self.rounds.get(&r).is_some_and(|s| s.proposal.is_some()))
            {
                self.started = true;
                self.deadline = self.round_deadline(r, now_ms);
            }
            // The leader of the current round is unreachable and has proposed nothing: once
            // Q members are known to be in the round (so they move on together), move on.
            // So is a leader too far away to finish the round in the round's time.
            if r >= 2
                && r == self.round
                && self.started
                && (self.leader_unreachable(r) || self.leader_too_far(r))
            {
                self.enter_round(r.saturating_add(1), now_ms, true, out);
                progressed = true;
            }
            // Round changes from f + 1 members above the current round: catch up.
            if let Some(target) = self.jump_target() {
                self.enter_round(target, now_ms, true, out);
                progressed = true;
            }
            // Leader of the current round with a quorum of round changes: propose.
            if r >= 2
                && r == self.round
                && self.leader(r) == usize::from(self.me())
                && !self.sent_steps.contains(&(r, STEP_PROPOSAL))
            {
                if let Some(body) = self.proposal_for(r) {
                    if let Some(sm) = self.sign_and_send(r, body, out) {
                        self.state(r).proposal = Some(sm);
                        progressed = true;
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// Enters `round` (above the current one): timer, pruning, and the own round change.
    fn enter_round(&mut self, round: u32, now_ms: u64, send_rc: bool, out: &mut Vec<Output>) {
        if round <= self.round {
            return;
        }
        self.round = round;
        self.deadline = self.round_deadline(round, now_ms);
        self.started = false;
        // Only commits of past rounds still matter (a quorum of them decides).
        for (_, state) in self.rounds.range_mut(..round) {
            state.prepares.clear();
            state.round_changes.clear();
            state.proposal = None;
        }
        self.rounds.retain(|_, s| {
            !(s.commits.is_empty()
                && s.prepares.is_empty()
                && s.round_changes.is_empty()
                && s.proposal.is_none())
        });
        if send_rc {
            let body = self.round_change_body();
            self.send(round, body, out);
        }
    }

    /// This member's round change: its prepared value with the proof, and its input. A member
    /// locked on a value whose proof a restart lost claims that value without a proof: peers
    /// reject such a round change (it counts for nothing), but a decided peer answers it with
    /// the decision, and the member never claims less than its lock.
    fn round_change_body(&self) -> Body {
        let (prepared, proof) = match &self.prepared {
            None => (None, Vec::new()),
            Some(p) => (
                Some((p.round, RootHex(p.root))),
                p.proof.clone().unwrap_or_default(),
            ),
        };
        Body::RoundChange {
            prepared,
            proof,
            input: self.input.map(RootHex),
        }
    }

    /// Whether no root can reach a quorum of round-1 prepares any more: the most prepared
    /// root plus every member whose round-1 prepare is not in (this one included, when its
    /// client has not asked yet; unreachable members excluded) is below the quorum.
    fn round_one_lost(&self) -> bool {
        let Some(state) = self.rounds.get(&1) else {
            return false;
        };
        let mut by_root: BTreeMap<Root, usize> = BTreeMap::new();
        for sm in state.prepares.values() {
            if let Body::Prepare { root } = &sm.message.body {
                *by_root.entry(*root).or_default() += 1;
            }
        }
        let best = by_root.values().copied().max().unwrap_or(0);
        let silent = self
            .unreachable
            .iter()
            .filter(|m| !state.prepares.contains_key(m))
            .count();
        let unheard = self
            .members
            .n
            .saturating_sub(state.prepares.len())
            .saturating_sub(silent);
        best + unheard < self.members.quorum
    }

    /// Whether round `r`'s leader is another member, unreachable, and no proposal of it is in.
    fn leader_unreachable(&self, r: u32) -> bool {
        let leader = self.leader(r);
        leader != usize::from(self.me())
            && u16::try_from(leader).is_ok_and(|l| self.unreachable.contains(&l))
            && self.rounds.get(&r).is_none_or(|s| s.proposal.is_none())
    }

    /// Whether round `r`'s leader is another member, has proposed nothing yet, and is too far
    /// away for the round to finish in its time: a round led by member `L` needs about the
    /// round trip to `L` (round changes to it, its proposal back) plus the round trip within
    /// a quorum (prepares, then commits), and its timer starts once `Q` members are in it.
    /// Waiting out such a round only delays the next leader's: a member behind a 500 ms link
    /// cost every round it led in the race test (round 2 lasts 400 ms with 200 ms rounds), and
    /// after a split round 1 that left a few racing duties without a decision in the request's
    /// 1.5 s. Rounds are never skipped once they reached the longest round length, so that
    /// rounds grow until any leader can finish one (the protocol's liveness argument is
    /// unchanged); and since the next round is the next member's, a far member still leads
    /// rounds once they are long enough.
    fn leader_too_far(&self, r: u32) -> bool {
        let leader = self.leader(r);
        if leader == usize::from(self.me())
            || self.rounds.get(&r).is_some_and(|s| s.proposal.is_some())
        {
            return false;
        }
        let Some(Some(to_leader)) = self.round_trips.get(leader).copied() else {
            return false;
        };
        let len = self.round_len(r);
        if len >= self.timing.max_round_ms {
            return false;
        }
        // The (Q-1)-th smallest round trip to another member: a quorum's exchange.
        let mut others: Vec<u64> = self.round_trips.iter().flatten().copied().collect();
        others.sort_unstable();
        let within_quorum = others
            .get(self.members.quorum.saturating_sub(2))
            .copied()
            .unwrap_or(0);
        to_leader.saturating_add(within_quorum) > len
    }

    /// Members known to be in `round` or above: this one, and those whose round changes for
    /// such rounds it holds.
    fn members_at_or_above(&self, round: u32) -> usize {
        let mut members = BTreeSet::from([self.me()]);
        for (_, state) in self.rounds.range(round..) {
            members.extend(state.round_changes.keys().copied());
        }
        members.len()
    }

    /// `f + 1` rule: the highest round that `2Q - n` other members have sent round changes
    /// for (or above), when it is above the current round.
    fn jump_target(&self) -> Option<u32> {
        let n = self.members.n;
        let q = self.members.quorum;
        let threshold = (2 * q)
            .saturating_sub(n)
            .clamp(1, n.saturating_sub(1).max(1));
        let mut highest: BTreeMap<u16, u32> = BTreeMap::new();
        for (round, state) in self.rounds.range(self.round.saturating_add(1)..) {
            for from in state.round_changes.keys() {
                highest.insert(*from, *round);
            }
        }
        let mut rounds: Vec<u32> = highest.into_values().collect();
        if rounds.len() < threshold {
            return None;
        }
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        rounds.get(threshold - 1).copied()
    }

    /// The proposal the leader of `round` makes from the round changes it holds, if any.
    fn proposal_for(&self, round: u32) -> Option<Body> {
        let state = self.rounds.get(&round)?;
        if state.round_changes.len() < self.members.quorum {
            return None;
        }
        let mut highest: Option<(u32, Root, Vec<SignedMessage>)> = None;
        let mut inputs: BTreeMap<Root, usize> = BTreeMap::new();
        let mut justification = Vec::new();
        for sm in state.round_changes.values() {
            let Body::RoundChange {
                prepared,
                proof,
                input,
            } = &sm.message.body
            else {
                continue;
            };
            if let Some((pr, RootHex(pv))) = prepared {
                if highest.as_ref().is_none_or(|(hr, _, _)| pr > hr) {
                    highest = Some((*pr, *pv, proof.clone()));
                }
            }
            if let Some(RootHex(i)) = input {
                *inputs.entry(*i).or_default() += 1;
            }
            let mut stripped = sm.clone();
            stripped.message.body = Body::RoundChange {
                prepared: *prepared,
                proof: Vec::new(),
                input: *input,
            };
            justification.push(stripped);
        }
        let root = match highest {
            Some((_, root, proof)) => {
                justification.extend(proof);
                root
            }
            None => match self.input {
                Some(root) => root,
                None => {
                    // Most carried input; ties: the smallest root (BTreeMap order, first max).
                    let mut best: Option<(Root, usize)> = None;
                    for (root, count) in inputs {
                        if best.is_none_or(|(_, c)| count > c) {
                            best = Some((root, count));
                        }
                    }
                    best?.0
                }
            },
        };
        Some(Body::Proposal {
            root,
            justification,
        })
    }

    /// Checks a proposal's justification for `round`; returns the highest prepared round and
    /// its proof when one is claimed.
    #[allow(clippy::type_complexity)]
    fn check_justification(
        &self,
        round: u32,
        root: &Root,
        justification: &[SignedMessage],
    ) -> Result<Option<(u32, Vec<SignedMessage>)>, &'static str> {
        if justification.len() > 2 * self.members.n {
            return Err("justification too long");
        }
        let mut senders = BTreeSet::new();
        let mut highest: Option<(u32, Root)> = None;
        let mut prepares = Vec::new();
        for sm in justification {
            let m = &sm.message;
            if m.instance != self.id {
                return Err("justification of another instance");
            }
            if usize::from(m.from) >= self.members.n || !self.verify(sm) {
                return Err("justification with a bad signature");
            }
            match &m.body {
                Body::RoundChange { prepared, .. } => {
                    if m.round != round {
                        return Err("justification with a round change of another round");
                    }
                    if !senders.insert(m.from) {
                        return Err("justification with two round changes of one member");
                    }
                    if let Some((pr, RootHex(pv))) = prepared {
                        if *pr == 0 || *pr >= round {
                            return Err("justification with a prepared round not below the round");
                        }
                        match highest {
                            Some((hr, hv)) if *pr == hr && *pv != hv => {
                                return Err("justification with conflicting prepared values");
                            }
                            Some((hr, _)) if *pr <= hr => {}
                            _ => highest = Some((*pr, *pv)),
                        }
                    }
                }
                Body::Prepare { .. } => prepares.push(sm.clone()),
                _ => return Err("justification with an unexpected message"),
            }
        }
        if senders.len() < self.members.quorum {
            return Err("justification without a quorum of round changes");
        }
        match highest {
            None if prepares.is_empty() => Ok(None),
            None => Err("justification with prepares but no prepared value"),
            Some((pr, pv)) => {
                if pv != *root {
                    return Err("proposal differs from the highest prepared value");
                }
                if !self.is_prepare_quorum(pr, &pv, &prepares) {
                    return Err("highest prepared value without a valid proof");
                }
                Ok(Some((pr, prepares)))
            }
        }
    }

    /// A restored member locked on a value without its proof takes a valid proof for a round
    /// at least as high (any such proof is for the locked value or a later safe one).
    fn adopt_proof(&mut self, round: u32, root: Root, proof: &[SignedMessage]) {
        if let Some(p) = &self.prepared {
            if p.proof.is_none() && round >= p.round {
                self.prepared = Some(Prepared {
                    round,
                    root,
                    proof: Some(proof.to_vec()),
                });
            }
        }
    }

    fn prepare_quorum(&self, round: u32) -> Option<(Root, Vec<SignedMessage>)> {
        let state = self.rounds.get(&round)?;
        let mut by_root: BTreeMap<Root, Vec<SignedMessage>> = BTreeMap::new();
        for sm in state.prepares.values() {
            if let Body::Prepare { root } = &sm.message.body {
                by_root.entry(*root).or_default().push(sm.clone());
            }
        }
        by_root
            .into_iter()
            .find(|(_, v)| v.len() >= self.members.quorum)
    }

    fn commit_quorum(&self) -> Option<Decision> {
        for (round, state) in &self.rounds {
            let mut by_root: BTreeMap<Root, Vec<SignedMessage>> = BTreeMap::new();
            for sm in state.commits.values() {
                if let Body::Commit { root } = &sm.message.body {
                    by_root.entry(*root).or_default().push(sm.clone());
                }
            }
            if let Some((root, commits)) = by_root
                .into_iter()
                .find(|(_, v)| v.len() >= self.members.quorum)
            {
                return Some(Decision {
                    root,
                    round: *round,
                    commits,
                });
            }
        }
        None
    }

    /// Whether `proof` is a quorum of valid prepares for `(round, root)` from distinct members
    /// (and nothing else).
    fn is_prepare_quorum(&self, round: u32, root: &Root, proof: &[SignedMessage]) -> bool {
        if proof.len() > self.members.n {
            return false;
        }
        let mut senders = BTreeSet::new();
        for sm in proof {
            let m = &sm.message;
            let matches = m.instance == self.id
                && m.round == round
                && matches!(&m.body, Body::Prepare { root: r } if r == root)
                && usize::from(m.from) < self.members.n
                && senders.insert(m.from)
                && self.verify(sm);
            if !matches {
                return false;
            }
        }
        senders.len() >= self.members.quorum
    }

    fn decide(&mut self, decision: Decision, announce: bool, out: &mut Vec<Output>) {
        if self.decision.is_some() {
            return;
        }
        // Members whose commit of the decided round and root this member holds have seen a
        // quorum of prepares and receive the same commits it did: they decide on their own,
        // and a `Decided` message (the commits again) would only load the links at the moment
        // a burst of instances needs them most. The others get it now; one that still misses
        // a commit moves on at its round timer and is answered with the decision (rule 9).
        let committed: BTreeSet<u16> = self
            .rounds
            .get(&decision.round)
            .map(|s| {
                s.commits
                    .iter()
                    .filter(|(_, sm)| {
                        matches!(sm.message.body, Body::Commit { root } if root == decision.root)
                    })
                    .map(|(m, _)| *m)
                    .collect()
            })
            .unwrap_or_default();
        self.decision = Some(decision.clone());
        self.rounds.clear();
        if announce {
            let mut signed = Vec::new();
            self.send_decided(&mut signed);
            let me = self.me();
            let to: Vec<u16> = (0..self.members.n)
                .filter_map(|m| u16::try_from(m).ok())
                .filter(|m| *m != me && !committed.contains(m))
                .collect();
            if !to.is_empty() {
                out.extend(signed.into_iter().filter_map(|o| match o {
                    Output::Send(sm) => Some(Output::SendTo(to.clone(), sm)),
                    _ => None,
                }));
            }
        }
        out.push(Output::Decided(decision));
    }

    /// Sends this member's `Decided` message (signed once, re-sent as is).
    fn send_decided(&mut self, out: &mut Vec<Output>) {
        let Some(decision) = &self.decision else {
            return;
        };
        if let Some(sm) = self
            .sent
            .iter()
            .find(|sm| matches!(sm.message.body, Body::Decided { .. }))
        {
            out.push(Output::Send(sm.clone()));
            return;
        }
        let body = Body::Decided {
            root: decision.root,
            commits: decision.commits.clone(),
        };
        let round = decision.round;
        self.send(round, body, out);
    }

    /// After a restore: the own messages of the latest round this member sent in (or its
    /// decision), so that peers that missed them catch up.
    fn resend_latest(&mut self, out: &mut Vec<Output>) {
        if self.decision.is_some() {
            self.send_decided(out);
            return;
        }
        let Some(latest) = self.sent.iter().map(|sm| sm.message.round).max() else {
            return;
        };
        for sm in &self.sent {
            if sm.message.round == latest {
                out.push(Output::Send(sm.clone()));
            }
        }
    }

    // ----- helpers -----------------------------------------------------------------------

    fn me(&self) -> u16 {
        u16::try_from(self.members.me).unwrap_or(u16::MAX)
    }

    fn leader(&self, round: u32) -> usize {
        let n = self.members.n.max(1);
        (self.leader_offset + (round as usize % n)) % n
    }

    fn round_deadline(&self, round: u32, now_ms: u64) -> u64 {
        now_ms.saturating_add(self.round_len(round))
    }

    /// Length of round `round`: `round_ms * 2^(round-1)`, capped at `max_round_ms`.
    fn round_len(&self, round: u32) -> u64 {
        let shift = round.saturating_sub(1).min(63);
        self.timing
            .round_ms
            .saturating_mul(1u64 << shift)
            .min(self.timing.max_round_ms)
            .max(1)
    }

    fn state(&mut self, round: u32) -> &mut RoundState {
        self.rounds.entry(round).or_default()
    }

    /// The message of `from` held in `round`'s slot that `slot` picks, if any.
    fn held(
        &self,
        round: u32,
        slot: impl Fn(&RoundState) -> &BTreeMap<u16, SignedMessage>,
        from: u16,
    ) -> Option<&SignedMessage> {
        self.rounds.get(&round).and_then(|s| slot(s).get(&from))
    }

    /// Checks `msg`'s signature before it is taken, given the message of the same sender,
    /// kind and round already held (`held`): a copy of it is refused as a duplicate without a
    /// check (the one held was checked); a different message is refused as an equivocation
    /// once its signature verifies (else as a bad signature).
    fn admit(&self, held: Option<&SignedMessage>, msg: &SignedMessage) -> Result<(), Rejected> {
        match held {
            Some(first) if same_signed(first, msg, &self.members.domain) => {
                Err(Rejected::Invalid("duplicate"))
            }
            _ if !self.verify(msg) => Err(Rejected::BadSignature),
            Some(_) => Err(Rejected::Invalid("equivocation")),
            None => Ok(()),
        }
    }

    fn verify(&self, sm: &SignedMessage) -> bool {
        let bytes = sm.message.signing_bytes(&self.members.domain);
        self.auth
            .verify(usize::from(sm.message.from), &bytes, &sm.signature)
    }

    /// Signs and sends `body` for `round` unless this member already sent that step in that
    /// round; records it among the own messages (and in the round's state).
    fn send(&mut self, round: u32, body: Body, out: &mut Vec<Output>) -> bool {
        self.sign_and_send(round, body, out).is_some()
    }

    fn sign_and_send(
        &mut self,
        round: u32,
        body: Body,
        out: &mut Vec<Output>,
    ) -> Option<SignedMessage> {
        let step = step_of(&body);
        if !self.sent_steps.insert((round, step)) {
            return None;
        }
        let message = Message {
            instance: self.id,
            round,
            from: self.me(),
            body,
        };
        let signature = self.auth.sign(&message.signing_bytes(&self.members.domain));
        let sm = SignedMessage { message, signature };
        let me = self.me();
        match step {
            STEP_PREPARE => {
                self.state(round).prepares.insert(me, sm.clone());
            }
            STEP_COMMIT => {
                self.state(round).commits.insert(me, sm.clone());
            }
            STEP_ROUND_CHANGE if provable(&sm.message.body) => {
                self.state(round).round_changes.insert(me, sm.clone());
            }
            _ => {}
        }
        self.sent.push(sm.clone());
        out.push(Output::Send(sm.clone()));
        Some(sm)
    }
}

/// Whether a round change can count: it claims no prepared value, or carries a proof. An own
/// round change claiming a lock whose proof a restart lost counts for nothing, here as at the
/// peers.
fn provable(body: &Body) -> bool {
    match body {
        Body::RoundChange {
            prepared, proof, ..
        } => prepared.is_none() || !proof.is_empty(),
        _ => true,
    }
}

/// Keeps the first message of a member for a (round, step); a second one is a duplicate (same
/// signed content) or an equivocation.
fn insert_first(
    slot: &mut BTreeMap<u16, SignedMessage>,
    from: u16,
    msg: &SignedMessage,
    domain: &[u8; 32],
) -> Result<(), Rejected> {
    match slot.get(&from) {
        Some(first) if same_signed(first, msg, domain) => Err(Rejected::Invalid("duplicate")),
        Some(_) => Err(Rejected::Invalid("equivocation")),
        None => {
            slot.insert(from, msg.clone());
            Ok(())
        }
    }
}

fn same_signed(a: &SignedMessage, b: &SignedMessage, domain: &[u8; 32]) -> bool {
    a.message.signing_bytes(domain) == b.message.signing_bytes(domain)
}

fn instance_bytes(id: &InstanceId) -> Vec<u8> {
    let mut out = Vec::with_capacity(57);
    out.extend_from_slice(&id.validator.0);
    match id.duty {
        Duty::Block { slot } => {
            out.push(1);
            out.extend_from_slice(&slot.to_be_bytes());
        }
        Duty::Attestation { target_epoch } => {
            out.push(2);
            out.extend_from_slice(&target_epoch.to_be_bytes());
        }
    }
    out
}

impl Message {
    /// The bytes a member signs: a domain tag, `domain` (the cluster hash) and a canonical
    /// encoding of the message.
    ///
    /// Layout (integers big-endian): tag `dvsigner-agreement-v1` | domain (32) | validator (48)
    /// | duty kind (1: block, 2: attestation) | slot or target epoch (8) | round (4) | sender
    /// (2) | step (1: prepare, 2: commit, 3: round change, 4: proposal, 5: decided) | fields:
    /// prepare, commit, proposal, decided: root (32); round change: prepared flag (0, or 1 then
    /// round (4) and root (32)) and input flag (0, or 1 then root (32)).
    ///
    /// Nested messages (a round change's proof, a proposal's justification, a decision's
    /// commits) are not covered: each carries its own sender's signature and is checked on its
    /// own, and a proposal or decision is only accepted when its nested messages are valid.
    pub fn signing_bytes(&self, domain: &[u8; 32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(SIGNING_TAG.len() + 32 + 57 + 7 + 70);
        out.extend_from_slice(SIGNING_TAG);
        out.extend_from_slice(domain);
        out.extend_from_slice(&instance_bytes(&self.instance));
        out.extend_from_slice(&self.round.to_be_bytes());
        out.extend_from_slice(&self.from.to_be_bytes());
        out.push(step_of(&self.body));
        match &self.body {
            Body::Prepare { root }
            | Body::Commit { root }
            | Body::Proposal { root, .. }
            | Body::Decided { root, .. } => out.extend_from_slice(root),
            Body::RoundChange {
                prepared, input, ..
            } => {
                match prepared {
                    None => out.push(0),
                    Some((round, RootHex(root))) => {
                        out.push(1);
                        out.extend_from_slice(&round.to_be_bytes());
                        out.extend_from_slice(root);
                    }
                }
                match input {
                    None => out.push(0),
                    Some(RootHex(root)) => {
                        out.push(1);
                        out.extend_from_slice(root);
                    }
                }
            }
        }
        out
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
    if decision.commits.len() > members.n || decision.round == 0 {
        return false;
    }
    let mut senders = BTreeSet::new();
    for sm in &decision.commits {
        let m = &sm.message;
        let ok = m.instance == *id
            && m.round == decision.round
            && matches!(&m.body, Body::Commit { root } if *root == decision.root)
            && usize::from(m.from) < members.n
            && senders.insert(m.from)
            && auth.verify(
                usize::from(m.from),
                &m.signing_bytes(&members.domain),
                &sm.signature,
            );
        if !ok {
            return false;
        }
    }
    members.quorum > 0 && senders.len() >= members.quorum
}

#[cfg(test)]
#[path = "sim.rs"]
mod sim;
