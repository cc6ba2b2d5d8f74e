//! Deterministic simulation of the agreement engine: n instances exchanging messages through a
//! seeded event queue with random per-message delays, crashed and restarted members, partitions
//! that heal, and byzantine members; plus unit tests of every rejection path.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::Sha256;

use super::{verify_decision, Instance, Rejected, MAX_ROUNDS_AHEAD};
use crate::agreement::types::{
    Authenticator, Body, Decision, Duty, InstanceId, Members, Message, Output, Persisted, Root,
    RootHex, SignedMessage, Timing,
};
use crate::bls::PublicKeyBytes;

// ----- test authenticator ----------------------------------------------------------------

/// HMAC-SHA256 with one key per member (every member knows every key in the test; byzantine
/// members only ever sign with their own).
struct HmacAuth {
    me: usize,
    keys: Arc<Vec<[u8; 32]>>,
}

fn mac(key: &[u8; 32], bytes: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(bytes);
    m.finalize().into_bytes().to_vec()
}

impl Authenticator for HmacAuth {
    fn sign(&self, bytes: &[u8]) -> Vec<u8> {
        mac(&self.keys[self.me], bytes)
    }
    fn verify(&self, member: usize, bytes: &[u8], signature: &[u8]) -> bool {
        self.keys
            .get(member)
            .is_some_and(|k| mac(k, bytes) == signature)
    }
}

fn keys(n: usize, seed: u64) -> Arc<Vec<[u8; 32]>> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6b65_7973);
    Arc::new((0..n).map(|_| rng.gen()).collect())
}

const DOMAIN: [u8; 32] = [7u8; 32];

fn id_for(slot: u64) -> InstanceId {
    InstanceId {
        validator: PublicKeyBytes([0xab; 48]),
        duty: Duty::Block { slot },
    }
}

fn members(n: usize, quorum: usize, me: usize) -> Members {
    Members {
        n,
        quorum,
        me,
        domain: DOMAIN,
    }
}

fn root(b: u8) -> Root {
    [b; 32]
}

fn sign_as(
    keys: &Arc<Vec<[u8; 32]>>,
    id: InstanceId,
    from: usize,
    round: u32,
    body: Body,
) -> SignedMessage {
    let message = Message {
        instance: id,
        round,
        from: from as u16,
        body,
    };
    let signature = mac(&keys[from], &message.signing_bytes(&DOMAIN));
    SignedMessage { message, signature }
}

fn sends(out: &[Output]) -> Vec<SignedMessage> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(sm) | Output::SendTo(_, sm) => Some(sm.clone()),
            Output::Decided(_) => None,
        })
        .collect()
}

fn decided(out: &[Output]) -> Option<Decision> {
    out.iter().find_map(|o| match o {
        Output::Decided(d) => Some(d.clone()),
        Output::Send(_) | Output::SendTo(..) => None,
    })
}

// ----- simulator -------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Byz {
    /// Different prepares/commits (and round-1 prepares) to different peers.
    Equivocate,
    /// As leader: proposals of a garbage root, unjustified or with a justification of another
    /// round; proposals in rounds it does not lead.
    BadProposal,
    /// Round changes claiming a garbage prepared value with a forged proof; as leader, a
    /// proposal justified by such a round change.
    ForgedProof,
    /// Replays messages of another instance (signed by honest members) and echoes everything
    /// it receives back to everyone, late.
    Replay,
    /// Random messages: random senders, rounds, bodies, nested messages, signatures.
    Garbage,
}

const BYZ_ALL: [Byz; 5] = [
    Byz::Equivocate,
    Byz::BadProposal,
    Byz::ForgedProof,
    Byz::Replay,
    Byz::Garbage,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Honest,
    /// Never starts (crashed for the whole instance).
    Crashed,
    Byzantine(Byz),
}

#[derive(Clone, Debug)]
struct Scenario {
    n: usize,
    quorum: usize,
    roles: Vec<Role>,
    /// Per member: its own client's root and when it asks.
    inputs: Vec<Option<(Root, u64)>>,
    /// Per-message delay, uniform in `delay.0..=delay.1` ms.
    delay: (u64, u64),
    /// Per member: extra delay of every message towards it (a member behind a long link, as
    /// the race test's delayed node: slow to reach, quick to answer). Empty: none.
    slow_in: Vec<u64>,
    /// Whether each instance is told its measured round trips to the other members (as the
    /// driver does from the transport's estimates): the largest delay each way, plus the
    /// extra delays.
    round_trips: bool,
    /// Per member its side of a partition, and when the partition heals (messages across it
    /// sent before then are lost).
    partition: Option<(Vec<u8>, u64)>,
    /// (member, crash time, restart time): the member loses its in-memory instance and is
    /// restored from its last persisted state.
    restarts: Vec<(usize, u64, u64)>,
    timing: Timing,
    /// Simulated time limit.
    horizon: u64,
}

#[derive(Debug, Default)]
struct Report {
    /// Per member: its decision and when.
    decisions: Vec<Option<(Decision, u64)>>,
    /// Messages sent by honest members (each a broadcast to n - 1 peers).
    honest_sends: usize,
    /// Messages the engines rejected.
    rejected: usize,
    /// Highest round any honest member reached.
    max_round: u32,
    /// Per member: whether it ever had an instance (a request or a message reached it).
    involved: Vec<bool>,
}

impl Report {
    fn honest_decisions<'a>(&'a self, s: &'a Scenario) -> impl Iterator<Item = &'a Decision> {
        self.decisions
            .iter()
            .enumerate()
            .filter(|(i, _)| s.roles[*i] == Role::Honest)
            .filter_map(|(_, d)| d.as_ref().map(|(d, _)| d))
    }
}

enum Event {
    Deliver {
        to: usize,
        msg: SignedMessage,
    },
    Propose {
        node: usize,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    /// A byzantine member's periodic injection.
    Act {
        node: usize,
    },
}

struct Node {
    role: Role,
    auth: Arc<HmacAuth>,
    inst: Option<Instance>,
    up: bool,
    persisted: Option<Persisted>,
    proposed: bool,
    /// Messages received (byzantine replay and forgery material).
    seen: Vec<SignedMessage>,
    involved: bool,
}

struct Sim<'a> {
    s: &'a Scenario,
    id: InstanceId,
    keys: Arc<Vec<[u8; 32]>>,
    rng: StdRng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Event>,
    nodes: Vec<Node>,
    /// Every message an honest member ever sent, per (member, round, step): the signed bytes.
    ledger: BTreeMap<(u16, u32, u8), Vec<u8>>,
    report: Report,
    pending_restarts: usize,
    /// `SIM_TRACE=1`: print every send, rejection and decision (debugging a failing seed).
    trace: bool,
}

fn step(body: &Body) -> u8 {
    match body {
        Body::Prepare { .. } => 1,
        Body::Commit { .. } => 2,
        Body::RoundChange { .. } => 3,
        Body::Proposal { .. } => 4,
        Body::Decided { .. } => 5,
    }
}

fn brief(body: &Body) -> String {
    match body {
        Body::Prepare { root } => format!("prepare {}", root[0]),
        Body::Commit { root } => format!("commit {}", root[0]),
        Body::RoundChange {
            prepared, input, ..
        } => format!(
            "round change prepared {:?} input {:?}",
            prepared.map(|(r, v)| (r, v.0[0])),
            input.map(|v| v.0[0])
        ),
        Body::Proposal {
            root,
            justification,
        } => format!("proposal {} ({} justifying)", root[0], justification.len()),
        Body::Decided { root, .. } => format!("decided {}", root[0]),
    }
}

impl<'a> Sim<'a> {
    fn new(s: &'a Scenario, seed: u64) -> Self {
        let keys = keys(s.n, seed);
        let nodes = (0..s.n)
            .map(|i| Node {
                role: s.roles[i],
                auth: Arc::new(HmacAuth {
                    me: i,
                    keys: keys.clone(),
                }),
                inst: None,
                up: s.roles[i] != Role::Crashed,
                persisted: None,
                proposed: false,
                seen: Vec::new(),
                involved: false,
            })
            .collect();
        let mut sim = Sim {
            s,
            id: id_for(1000 + seed % 7),
            keys,
            rng: StdRng::seed_from_u64(seed),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            nodes,
            ledger: BTreeMap::new(),
            report: Report {
                decisions: vec![None; s.n],
                ..Report::default()
            },
            pending_restarts: s.restarts.len(),
            trace: std::env::var_os("SIM_TRACE").is_some(),
        };
        for (i, input) in s.inputs.iter().enumerate() {
            if let Some((_, at)) = input {
                sim.schedule(*at, Event::Propose { node: i });
            }
        }
        for &(node, crash, restart) in &s.restarts {
            sim.schedule(crash, Event::Crash { node });
            sim.schedule(restart, Event::Restart { node });
        }
        for i in 0..s.n {
            if matches!(s.roles[i], Role::Byzantine(_)) {
                sim.schedule(0, Event::Act { node: i });
            }
        }
        sim
    }

    fn schedule(&mut self, at: u64, ev: Event) {
        self.seq += 1;
        self.events.insert(self.seq, ev);
        self.queue.push(Reverse((at, self.seq)));
    }

    fn members(&self, me: usize) -> Members {
        members(self.s.n, self.s.quorum, me)
    }

    fn ensure_instance(&mut self, i: usize) {
        self.nodes[i].involved = true;
        if self.nodes[i].inst.is_none() {
            let mut inst = Instance::new(
                self.id,
                self.members(i),
                self.s.timing,
                self.nodes[i].auth.clone(),
                self.now,
            );
            if self.s.round_trips {
                inst.set_round_trips(
                    (0..self.s.n).map(|j| (j != i).then(|| self.round_trip(i, j))),
                );
            }
            self.nodes[i].inst = Some(inst);
        }
    }

    /// Every honest member that has an instance (or a request to come) decided, and no
    /// restart is pending. A member that never hears of the instance has nothing to sign.
    fn done(&self) -> bool {
        self.pending_restarts == 0
            && (0..self.s.n).all(|i| {
                self.s.roles[i] != Role::Honest
                    || self.report.decisions[i].is_some()
                    || (!self.nodes[i].involved && !self.queue_has_propose(i))
            })
    }

    fn queue_has_propose(&self, i: usize) -> bool {
        self.events
            .values()
            .any(|e| matches!(e, Event::Propose { node } if *node == i))
    }

    fn run(mut self) -> Report {
        while !self.done() {
            let next_event = self.queue.peek().map(|Reverse((t, _))| *t);
            let next_tick = (0..self.s.n)
                .filter(|&i| self.nodes[i].up)
                .filter_map(|i| {
                    self.nodes[i]
                        .inst
                        .as_ref()
                        .and_then(|x| x.next_deadline())
                        .map(|t| (t.max(self.now), i))
                })
                .min();
            let tick_first = match (next_event, next_tick) {
                (None, None) => break,
                (Some(te), Some((tt, _))) => tt < te,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            if tick_first {
                let (t, i) = next_tick.expect("tick");
                if t > self.s.horizon {
                    break;
                }
                self.now = t;
                let out = self.nodes[i].inst.as_mut().expect("instance").tick(t);
                self.handle(i, out);
            } else {
                let Reverse((t, seq)) = self.queue.pop().expect("event");
                if t > self.s.horizon {
                    break;
                }
                self.now = t;
                let ev = self.events.remove(&seq).expect("event body");
                self.event(ev);
            }
        }
        self.report.involved = self.nodes.iter().map(|n| n.involved).collect();
        for node in &self.nodes {
            if node.role == Role::Honest {
                if let Some(inst) = &node.inst {
                    self.report.max_round = self.report.max_round.max(inst.round());
                }
            }
        }
        self.report
    }

    fn event(&mut self, ev: Event) {
        match ev {
            Event::Propose { node } => {
                self.nodes[node].proposed = true;
                if !self.nodes[node].up {
                    return;
                }
                let Some((r, _)) = self.s.inputs[node] else {
                    return;
                };
                self.ensure_instance(node);
                let now = self.now;
                let out = self.nodes[node]
                    .inst
                    .as_mut()
                    .expect("instance")
                    .propose(r, now);
                self.handle(node, out);
            }
            Event::Deliver { to, msg } => {
                if !self.nodes[to].up {
                    return;
                }
                if matches!(self.nodes[to].role, Role::Byzantine(_)) {
                    self.nodes[to].seen.push(msg.clone());
                    if self.nodes[to].seen.len() > 400 {
                        self.nodes[to].seen.remove(0);
                    }
                }
                self.ensure_instance(to);
                let now = self.now;
                match self.nodes[to]
                    .inst
                    .as_mut()
                    .expect("instance")
                    .receive(msg, now)
                {
                    Ok(out) => self.handle(to, out),
                    Err(e) => {
                        if self.trace {
                            println!("{} {to} rejected: {e}", self.now);
                        }
                        self.report.rejected += 1;
                    }
                }
            }
            Event::Crash { node } => {
                self.nodes[node].up = false;
                self.nodes[node].inst = None;
            }
            Event::Restart { node } => {
                self.pending_restarts -= 1;
                self.nodes[node].up = true;
                let now = self.now;
                if let Some(p) = self.nodes[node].persisted.clone() {
                    let inst = Instance::restore(
                        self.id,
                        self.members(node),
                        self.s.timing,
                        self.nodes[node].auth.clone(),
                        p,
                        now,
                    );
                    if let Some(d) = inst.decision() {
                        let d = d.clone();
                        self.record_decision(node, d);
                    }
                    self.nodes[node].inst = Some(inst);
                }
                // The client retries its request after the restart.
                if self.nodes[node].proposed {
                    if let Some((r, _)) = self.s.inputs[node] {
                        self.ensure_instance(node);
                        let out = self.nodes[node]
                            .inst
                            .as_mut()
                            .expect("instance")
                            .propose(r, now);
                        self.handle(node, out);
                    }
                }
            }
            Event::Act { node } => {
                if let Role::Byzantine(b) = self.nodes[node].role {
                    self.byzantine_act(node, b);
                }
                if self.now + 40 <= self.s.horizon {
                    self.schedule(self.now + 40, Event::Act { node });
                }
            }
        }
    }

    fn record_decision(&mut self, node: usize, d: Decision) {
        assert!(
            verify_decision(
                &self.id,
                &self.members(node),
                self.nodes[node].auth.as_ref(),
                &d
            ),
            "member {node} output a decision that does not verify"
        );
        match &self.report.decisions[node] {
            Some((first, _)) => assert_eq!(first.root, d.root, "member {node} decided twice"),
            None => {
                if self.trace {
                    println!(
                        "{} {node} decided {} in round {}",
                        self.now, d.root[0], d.round
                    );
                }
                self.report.decisions[node] = Some((d, self.now));
            }
        }
    }

    fn handle(&mut self, node: usize, out: Vec<Output>) {
        let role = self.nodes[node].role;
        if role == Role::Honest
            && out
                .iter()
                .any(|o| matches!(o, Output::Send(_) | Output::SendTo(..)))
        {
            // The driver stores the persisted state before any of the call's messages leave.
            let inst = self.nodes[node].inst.as_ref().expect("instance");
            self.nodes[node].persisted = Some(inst.persisted());
        }
        for o in out {
            match o {
                Output::Decided(d) => {
                    if role == Role::Honest {
                        self.record_decision(node, d);
                    }
                }
                Output::Send(sm) => self.send_out(node, role, None, sm),
                Output::SendTo(to, sm) => self.send_out(node, role, Some(to), sm),
            }
        }
    }

    /// One message of `node`'s outputs: to `to` (member indices), or to everyone.
    fn send_out(&mut self, node: usize, role: Role, to: Option<Vec<u16>>, sm: SignedMessage) {
        match role {
            Role::Honest => {
                let m = &sm.message;
                assert_eq!(usize::from(m.from), node);
                let key = (m.from, m.round, step(&m.body));
                let bytes = m.signing_bytes(&DOMAIN);
                if let Some(first) = self.ledger.get(&key) {
                    assert_eq!(
                        first, &bytes,
                        "member {node} sent two different messages for {key:?}"
                    );
                } else {
                    self.ledger.insert(key, bytes);
                }
                self.report.honest_sends += 1;
                if self.trace {
                    println!("{} {node} r{} sends {}", self.now, m.round, brief(&m.body));
                }
                match to {
                    Some(to) => {
                        for m in to {
                            self.send_to(node, usize::from(m), sm.clone());
                        }
                    }
                    None => self.broadcast(node, sm),
                }
            }
            Role::Byzantine(b) => self.byzantine_send(node, b, sm),
            Role::Crashed => {}
        }
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        match &self.s.partition {
            Some((side, heal)) => self.now >= *heal || side[a] == side[b],
            None => true,
        }
    }

    /// Extra delay of messages towards member `i`.
    fn slow_in(&self, i: usize) -> u64 {
        self.s.slow_in.get(i).copied().unwrap_or(0)
    }

    /// The round trip between `a` and `b` as a transport would measure it (worst case).
    fn round_trip(&self, a: usize, b: usize) -> u64 {
        2 * self.s.delay.1 + self.slow_in(a) + self.slow_in(b)
    }

    fn send_to(&mut self, from: usize, to: usize, msg: SignedMessage) {
        if to == from || !self.connected(from, to) {
            return;
        }
        let d = self.rng.gen_range(self.s.delay.0..=self.s.delay.1) + self.slow_in(to);
        self.schedule(self.now + d, Event::Deliver { to, msg });
    }

    fn broadcast(&mut self, from: usize, msg: SignedMessage) {
        for to in 0..self.s.n {
            self.send_to(from, to, msg.clone());
        }
    }

    // ----- byzantine behaviour -----------------------------------------------------------

    fn sign_byz(&self, from: usize, round: u32, body: Body) -> SignedMessage {
        sign_as(&self.keys, self.id, from, round, body)
    }

    fn leader_of(&self, round: u32) -> usize {
        // The leader rotation as the engine computes it, observed through a throwaway instance:
        // the member whose proposal is not rejected as "not from the round's leader".
        (0..self.s.n)
            .find(|&l| {
                let probe = self.sign_byz(
                    l,
                    round,
                    Body::Proposal {
                        root: root(0),
                        justification: Vec::new(),
                    },
                );
                let other = (l + 1) % self.s.n;
                let mut inst = Instance::new(
                    self.id,
                    self.members(other),
                    self.s.timing,
                    self.nodes[other].auth.clone(),
                    self.now,
                );
                inst.receive(probe, self.now)
                    != Err(Rejected::Invalid("proposal not from the round's leader"))
            })
            .unwrap_or(0)
    }

    /// A byzantine member's own engine output, altered by its strategy.
    fn byzantine_send(&mut self, node: usize, b: Byz, sm: SignedMessage) {
        let m = sm.message.clone();
        match (b, &m.body) {
            (Byz::Equivocate, Body::Prepare { .. } | Body::Commit { .. }) => {
                for to in 0..self.s.n {
                    let alt = root(self.rng.gen_range(1..=3));
                    let body = match m.body {
                        Body::Prepare { .. } => Body::Prepare { root: alt },
                        _ => Body::Commit { root: alt },
                    };
                    let msg = self.sign_byz(node, m.round, body);
                    self.send_to(node, to, msg);
                }
            }
            (Byz::BadProposal, Body::Proposal { justification, .. }) => {
                let j = justification.clone();
                for to in 0..self.s.n {
                    let body = Body::Proposal {
                        root: root(0xee),
                        justification: j.clone(),
                    };
                    let msg = self.sign_byz(node, m.round, body);
                    self.send_to(node, to, msg);
                }
            }
            (Byz::ForgedProof, Body::RoundChange { input, .. }) => {
                let pr = m.round.saturating_sub(1).max(1);
                let garbage = root(0xdd);
                let mut proof = vec![self.sign_byz(node, pr, Body::Prepare { root: garbage })];
                // Others' prepares re-pointed at the garbage root keep their old signatures.
                for seen in &self.nodes[node].seen {
                    if let Body::Prepare { .. } = seen.message.body {
                        let mut f = seen.clone();
                        f.message.round = pr;
                        f.message.body = Body::Prepare { root: garbage };
                        proof.push(f);
                    }
                    if proof.len() >= self.s.quorum {
                        break;
                    }
                }
                proof.push(proof[0].clone());
                let body = Body::RoundChange {
                    prepared: Some((pr, RootHex(garbage))),
                    proof,
                    input: *input,
                };
                let msg = self.sign_byz(node, m.round, body);
                self.broadcast(node, msg);
            }
            (Byz::ForgedProof, Body::Proposal { justification, .. }) => {
                let mut j = justification.clone();
                j.retain(|x| !matches!(x.message.body, Body::Prepare { .. }));
                j.push(self.sign_byz(
                    node,
                    m.round,
                    Body::RoundChange {
                        prepared: Some((m.round - 1, RootHex(root(0xdd)))),
                        proof: Vec::new(),
                        input: None,
                    },
                ));
                j.push(self.sign_byz(node, m.round - 1, Body::Prepare { root: root(0xdd) }));
                let body = Body::Proposal {
                    root: root(0xdd),
                    justification: j,
                };
                let msg = self.sign_byz(node, m.round, body);
                self.broadcast(node, msg);
            }
            _ => self.broadcast(node, sm),
        }
    }

    /// Periodic injections (every 40 ms of simulated time).
    fn byzantine_act(&mut self, node: usize, b: Byz) {
        let round = self.nodes[node].inst.as_ref().map_or(1, Instance::round);
        match b {
            Byz::Equivocate => {
                if round == 1 && self.now == 0 {
                    // Round-1 prepares of different roots to different peers, before its client.
                    for to in 0..self.s.n {
                        let alt = root(if to % 2 == 0 { 1 } else { 2 });
                        let msg = self.sign_byz(node, 1, Body::Prepare { root: alt });
                        self.send_to(node, to, msg);
                    }
                }
            }
            Byz::BadProposal => {
                for r in round..round + 3 {
                    let r = r.max(2);
                    let leader = self.leader_of(r);
                    let justification = match self.rng.gen_range(0..3) {
                        0 => Vec::new(),
                        1 => self.nodes[node]
                            .seen
                            .iter()
                            .filter(|x| matches!(x.message.body, Body::RoundChange { .. }))
                            .cloned()
                            .collect(),
                        _ => (0..self.s.n)
                            .map(|i| {
                                self.sign_byz(
                                    node,
                                    r,
                                    Body::RoundChange {
                                        prepared: None,
                                        proof: Vec::new(),
                                        input: Some(RootHex(root(i as u8))),
                                    },
                                )
                            })
                            .collect(),
                    };
                    let body = Body::Proposal {
                        root: root(0xee),
                        justification,
                    };
                    let from = if leader == node || self.rng.gen_bool(0.5) {
                        node
                    } else {
                        leader
                    };
                    let mut msg = self.sign_byz(node, r, body);
                    msg.message.from = from as u16;
                    self.broadcast(node, msg);
                }
            }
            Byz::ForgedProof => {}
            Byz::Replay => {
                // Messages honest members signed for another instance (a recorded duty).
                let other = id_for(77);
                let i = self.rng.gen_range(0..self.s.n);
                let r = self.rng.gen_range(1..=round + 1);
                let body = match self.rng.gen_range(0..3) {
                    0 => Body::Prepare { root: root(0xcc) },
                    1 => Body::Commit { root: root(0xcc) },
                    _ => Body::RoundChange {
                        prepared: None,
                        proof: Vec::new(),
                        input: Some(RootHex(root(0xcc))),
                    },
                };
                let foreign = sign_as(&self.keys, other, i, r, body);
                self.broadcast(node, foreign);
                // Everything it received, echoed to everyone.
                let seen = std::mem::take(&mut self.nodes[node].seen);
                for msg in &seen {
                    self.broadcast(node, msg.clone());
                }
            }
            Byz::Garbage => {
                for _ in 0..3 {
                    let msg = self.garbage(node, round);
                    let to = self.rng.gen_range(0..self.s.n);
                    self.send_to(node, to, msg);
                }
            }
        }
    }

    fn garbage(&mut self, node: usize, round: u32) -> SignedMessage {
        let rng = &mut self.rng;
        let r = match rng.gen_range(0..5) {
            0 => 0,
            1 => u32::MAX,
            2 => round + MAX_ROUNDS_AHEAD + rng.gen_range(1..5),
            _ => rng.gen_range(1..=round + 3),
        };
        let groot = root(rng.gen_range(0..=255));
        let nested = |rng: &mut StdRng, keys: &Arc<Vec<[u8; 32]>>, id: InstanceId| {
            (0..rng.gen_range(0..6))
                .map(|_| {
                    let from = rng.gen_range(0..keys.len() + 1) % (keys.len() + 1);
                    let body = match rng.gen_range(0..3) {
                        0 => Body::Prepare {
                            root: root(rng.gen()),
                        },
                        1 => Body::Commit {
                            root: root(rng.gen()),
                        },
                        _ => Body::RoundChange {
                            prepared: Some((rng.gen_range(0..4), RootHex(root(rng.gen())))),
                            proof: Vec::new(),
                            input: None,
                        },
                    };
                    let message = Message {
                        instance: id,
                        round: rng.gen_range(0..5),
                        from: from as u16,
                        body,
                    };
                    let signature = (0..rng.gen_range(0..40)).map(|_| rng.gen()).collect();
                    SignedMessage { message, signature }
                })
                .collect::<Vec<_>>()
        };
        let id = if rng.gen_bool(0.8) {
            self.id
        } else {
            id_for(5)
        };
        let keys = self.keys.clone();
        let body = match rng.gen_range(0..5) {
            0 => Body::Prepare { root: groot },
            1 => Body::Commit { root: groot },
            2 => Body::RoundChange {
                prepared: if rng.gen_bool(0.5) {
                    Some((rng.gen_range(0..r.max(1)), RootHex(groot)))
                } else {
                    None
                },
                proof: nested(rng, &keys, id),
                input: Some(RootHex(groot)),
            },
            3 => Body::Proposal {
                root: groot,
                justification: nested(rng, &keys, id),
            },
            _ => Body::Decided {
                root: groot,
                commits: nested(rng, &keys, id),
            },
        };
        let from = match rng.gen_range(0..4) {
            0 => rng.gen_range(0..u16::MAX as usize),
            1 => rng.gen_range(0..self.s.n),
            _ => node,
        };
        let message = Message {
            instance: id,
            round: r,
            from: from as u16,
            body,
        };
        let signature = if from == node && rng.gen_bool(0.7) {
            mac(&self.keys[node], &message.signing_bytes(&DOMAIN))
        } else {
            (0..32).map(|_| rng.gen()).collect()
        };
        SignedMessage { message, signature }
    }
}

// ----- scenario generators -----------------------------------------------------------------

const SIZES: [(usize, usize); 5] = [(4, 3), (3, 2), (5, 3), (5, 4), (7, 5)];

const TIMING: Timing = Timing {
    round_ms: 200,
    max_round_ms: 1600,
};

fn base(n: usize, quorum: usize, input: Root) -> Scenario {
    Scenario {
        n,
        quorum,
        roles: vec![Role::Honest; n],
        inputs: vec![Some((input, 0)); n],
        delay: (0, 50),
        slow_in: Vec::new(),
        round_trips: false,
        partition: None,
        restarts: Vec::new(),
        timing: TIMING,
        horizon: 120_000,
    }
}

/// Seeds per scenario: the default, or `SIM_SEEDS` (explore more seeds, starting at
/// `SIM_SEED0`, when changing the engine).
fn seeds(default: u64) -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed_range(count: u64) -> std::ops::Range<u64> {
    let first = std::env::var("SIM_SEED0")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    first..first + count
}

fn agreement_holds(s: &Scenario, r: &Report) -> bool {
    let roots: BTreeSet<Root> = r.honest_decisions(s).map(|d| d.root).collect();
    roots.len() <= 1
}

// ----- simulation tests ------------------------------------------------------------------

/// Identical inputs, no faults: every member decides the input in round 1 exactly two message
/// delays after the requests (prepare out, commit out), sending exactly a prepare, a commit and
/// a decided message.
#[test]
fn fast_path_one_round_trip() {
    let mut worst_sends = 0;
    for seed in seed_range(seeds(300)) {
        let (n, q) = SIZES[seed as usize % SIZES.len()];
        let d = 1 + seed % 40;
        let mut s = base(n, q, root(9));
        s.delay = (d, d);
        let r = Sim::new(&s, seed).run();
        for (i, dec) in r.decisions.iter().enumerate() {
            let (dec, at) = dec
                .as_ref()
                .unwrap_or_else(|| panic!("seed {seed}: {i} undecided"));
            assert_eq!(dec.root, root(9), "seed {seed}");
            assert_eq!(dec.round, 1, "seed {seed}");
            assert_eq!(
                *at,
                2 * d,
                "seed {seed}: member {i} decided at {at}, delay {d}"
            );
        }
        assert_eq!(r.honest_sends, 3 * n, "seed {seed}");
        assert_eq!(r.max_round, 1);
        worst_sends = worst_sends.max(r.honest_sends);
    }
    // Random delays (0-50 ms): still round 1, within two of the largest delays.
    for seed in seed_range(seeds(500)) {
        let (n, q) = SIZES[seed as usize % SIZES.len()];
        let s = base(n, q, root(9));
        let r = Sim::new(&s, seed).run();
        for dec in &r.decisions {
            let (dec, at) = dec.as_ref().expect("decided");
            assert_eq!((dec.root, dec.round), (root(9), 1), "seed {seed}");
            assert!(*at <= 100, "seed {seed}: decided at {at}");
        }
    }
    println!("fast path: {worst_sends} broadcasts per instance at most (3 per member)");
}

/// Conflicting inputs split 2/2 and 3/1 (and other splits for other sizes), requests at random
/// times within 50 ms, random delays: all decide the same root, one of the inputs.
#[test]
fn conflicting_inputs_decide_one_of_them() {
    let mut worst_round = 0;
    let mut rounds_seen: BTreeMap<u32, usize> = BTreeMap::new();
    let mut total_sends = 0;
    // Per (n, Q, members asking for root 1): instances, broadcasts, worst round, latest decision.
    type Case = (u64, usize, u32, u64);
    let mut cases: BTreeMap<(usize, usize, usize), Case> = BTreeMap::new();
    let seeds = seeds(1000);
    for seed in seed_range(seeds) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (n, q) = if seed % 2 == 0 {
            (4, 3)
        } else {
            SIZES[rng.gen_range(0..SIZES.len())]
        };
        let mut s = base(n, q, root(1));
        // 2/2 for even seeds of 4 members, 3/1 for odd ones; random splits otherwise.
        let split = if n == 4 {
            if seed % 4 == 0 {
                2
            } else {
                3
            }
        } else {
            rng.gen_range(1..n)
        };
        for (i, input) in s.inputs.iter_mut().enumerate() {
            let v = if i < split { root(1) } else { root(2) };
            *input = Some((v, rng.gen_range(0..=50)));
        }
        let r = Sim::new(&s, seed).run();
        assert!(agreement_holds(&s, &r), "seed {seed}: {:?}", r.decisions);
        let case = cases.entry((n, q, split)).or_default();
        for (i, dec) in r.decisions.iter().enumerate() {
            let (dec, at) = dec
                .as_ref()
                .unwrap_or_else(|| panic!("seed {seed}: {i} undecided"));
            assert!(dec.root == root(1) || dec.root == root(2), "seed {seed}");
            worst_round = worst_round.max(dec.round);
            *rounds_seen.entry(dec.round).or_default() += 1;
            case.2 = case.2.max(dec.round);
            case.3 = case.3.max(*at);
        }
        case.0 += 1;
        case.1 += r.honest_sends;
        total_sends += r.honest_sends;
    }
    println!(
        "conflicting inputs: {seeds} seeds, decision rounds {rounds_seen:?}, worst round \
         {worst_round}, {} broadcasts per instance on average",
        total_sends as u64 / seeds
    );
    for ((n, q, split), (count, sends, round, at)) in &cases {
        if *n == 4 {
            println!(
                "  {q}-of-{n}, split {split}/{}: {count} instances, {:.1} broadcasts per \
                 instance, worst round {round}, latest decision {at} ms",
                n - split,
                *sends as f64 / *count as f64
            );
        }
    }
}

/// Up to n - Q members crashed for the whole instance, the others split by a partition that
/// heals at a random time (messages across it lost until then), random delays and inputs: every
/// live member decides, within a bounded number of rounds.
#[test]
fn termination_with_crashes_and_healing_partitions() {
    let seeds = seeds(1000);
    let mut worst_round = 0;
    let mut worst_after_heal = 0;
    for seed in seed_range(seeds) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x7465_726d);
        let (n, q) = SIZES[rng.gen_range(0..SIZES.len())];
        let mut s = base(n, q, root(1));
        let crashed = rng.gen_range(0..=n - q);
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.gen_range(0..=i));
        }
        for &i in &order[..crashed] {
            s.roles[i] = Role::Crashed;
        }
        for input in s.inputs.iter_mut() {
            *input = match rng.gen_range(0..4) {
                0 => None,
                1 => Some((root(2), rng.gen_range(0..3000))),
                _ => Some((root(1), rng.gen_range(0..3000))),
            };
        }
        // Somebody asks, or there would be nothing to agree on.
        s.inputs[order[n - 1]] = Some((root(3), rng.gen_range(0..100)));
        let heal = rng.gen_range(0..6000);
        let side = (0..n).map(|_| rng.gen_range(0..3u8)).collect();
        s.partition = Some((side, heal));
        s.delay = (0, rng.gen_range(1..=300));
        let r = Sim::new(&s, seed).run();
        assert!(agreement_holds(&s, &r), "seed {seed}");
        let last_ask = s
            .inputs
            .iter()
            .flatten()
            .map(|(_, t)| *t)
            .max()
            .unwrap_or(0);
        for i in 0..n {
            if s.roles[i] != Role::Honest || (!r.involved[i] && s.inputs[i].is_none()) {
                continue;
            }
            let (dec, at) = r.decisions[i]
                .as_ref()
                .unwrap_or_else(|| panic!("seed {seed}: live member {i} undecided ({s:?})"));
            worst_round = worst_round.max(dec.round);
            worst_after_heal = worst_after_heal.max(at.saturating_sub(heal.max(last_ask)));
        }
    }
    println!(
        "termination: {seeds} seeds, worst decision round {worst_round}, worst time from heal \
         (or last request) to decision {worst_after_heal} ms (round 200 ms doubling to 1600 ms)"
    );
}

/// One byzantine member (f = 2Q - n - 1 >= 1 for these sizes) with each strategy, random inputs
/// and delays: no two honest members decide different roots, and with the byzantine member
/// within the crash budget (n - Q >= 1) every honest member still decides.
#[test]
fn agreement_under_byzantine_members() {
    let seeds = seeds(1000);
    let mut worst_round = 0;
    let mut rejected = 0;
    let mut decided_garbage = 0;
    for seed in seed_range(seeds) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x0062_797a);
        // Sizes with f >= 1: 4/3 (f = 1), 5/4 (f = 2), 7/5 (f = 2).
        let (n, q) = [(4, 3), (5, 4), (7, 5)][rng.gen_range(0..3)];
        let f = 2 * q - n - 1;
        let mut s = base(n, q, root(1));
        let byz_count = rng.gen_range(1..=f);
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.gen_range(0..=i));
        }
        for &i in &order[..byz_count] {
            s.roles[i] = Role::Byzantine(BYZ_ALL[rng.gen_range(0..BYZ_ALL.len())]);
        }
        for input in s.inputs.iter_mut() {
            let v = root(rng.gen_range(1..=3));
            *input = Some((v, rng.gen_range(0..=50)));
        }
        s.delay = (0, rng.gen_range(1..=100));
        s.horizon = 60_000;
        // Some runs also partition the members until a random time, or crash and restore an
        // honest one (safety must hold regardless; liveness is checked without them).
        let disturbed = rng.gen_bool(0.3);
        if disturbed {
            if rng.gen_bool(0.5) {
                let side = (0..n).map(|_| rng.gen_range(0..2u8)).collect();
                s.partition = Some((side, rng.gen_range(0..4000)));
            } else {
                let honest: Vec<usize> = (0..n).filter(|&i| s.roles[i] == Role::Honest).collect();
                let node = honest[rng.gen_range(0..honest.len())];
                let crash = rng.gen_range(0..400);
                s.restarts
                    .push((node, crash, crash + rng.gen_range(1..3000)));
            }
        }
        let r = Sim::new(&s, seed).run();
        assert!(
            agreement_holds(&s, &r),
            "seed {seed}: honest members disagree: {:?} roles {:?}",
            r.decisions
                .iter()
                .map(|d| d.as_ref().map(|(d, _)| d.root[0]))
                .collect::<Vec<_>>(),
            s.roles
        );
        if byz_count <= n - q && !disturbed {
            for i in 0..n {
                if s.roles[i] == Role::Honest {
                    let (dec, _) = r.decisions[i]
                        .as_ref()
                        .unwrap_or_else(|| panic!("seed {seed}: {i} undecided, {:?}", s.roles));
                    worst_round = worst_round.max(dec.round);
                    if dec.root == root(0xee) {
                        decided_garbage += 1;
                    }
                    assert_ne!(dec.root, root(0xdd), "seed {seed}: forged proof decided");
                }
            }
        }
        rejected += r.rejected;
    }
    println!(
        "byzantine: {seeds} seeds, worst decision round {worst_round}, {rejected} messages \
         rejected, {decided_garbage} member decisions of a byzantine leader's garbage root"
    );
}

/// Validity: all honest inputs v, nobody byzantine (crashes, partitions, restarts allowed):
/// the decision is v.
#[test]
fn validity_same_input_decides_it() {
    for seed in seed_range(seeds(500)) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x0076_616c);
        let (n, q) = SIZES[rng.gen_range(0..SIZES.len())];
        let mut s = base(n, q, root(5));
        for input in s.inputs.iter_mut() {
            *input = Some((root(5), rng.gen_range(0..2000)));
        }
        if rng.gen_bool(0.5) {
            let side = (0..n).map(|_| rng.gen_range(0..2u8)).collect();
            s.partition = Some((side, rng.gen_range(0..3000)));
        }
        if n > q {
            s.roles[rng.gen_range(0..n)] = Role::Crashed;
        }
        s.delay = (0, rng.gen_range(1..=200));
        let r = Sim::new(&s, seed).run();
        for i in 0..n {
            if s.roles[i] == Role::Honest {
                let (dec, _) = r.decisions[i].as_ref().expect("decided");
                assert_eq!(dec.root, root(5), "seed {seed}");
            }
        }
    }
}

/// A member crashes mid-instance and restarts from its persisted state (the client asks
/// again): it never sends two different messages for one (round, step) — the simulator's
/// ledger asserts that on every send across restarts — and every member still decides.
#[test]
fn restore_after_crash_never_equivocates_and_decides() {
    let seeds = seeds(1000);
    let mut worst_round = 0;
    let mut restored_mid = 0;
    for seed in seed_range(seeds) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x0072_6573);
        let (n, q) = SIZES[rng.gen_range(0..SIZES.len())];
        let mut s = base(n, q, root(1));
        for input in s.inputs.iter_mut() {
            let v = root(rng.gen_range(1..=2));
            *input = Some((v, rng.gen_range(0..=60)));
        }
        s.delay = (0, rng.gen_range(1..=80));
        let count = rng.gen_range(1..=3);
        for _ in 0..count {
            let node = rng.gen_range(0..n);
            let crash = rng.gen_range(0..1500);
            let restart = crash + rng.gen_range(1..3000);
            s.restarts.push((node, crash, restart));
        }
        let r = Sim::new(&s, seed).run();
        assert!(agreement_holds(&s, &r), "seed {seed}");
        for i in 0..n {
            let (dec, _) = r.decisions[i]
                .as_ref()
                .unwrap_or_else(|| panic!("seed {seed}: {i} undecided, {s:?}"));
            worst_round = worst_round.max(dec.round);
        }
        restored_mid += s.restarts.len();
    }
    println!(
        "restore: {seeds} seeds, {restored_mid} crash/restarts, worst decision round {worst_round}"
    );
}

// ----- unit tests ----------------------------------------------------------------------------

struct Fixture {
    keys: Arc<Vec<[u8; 32]>>,
    id: InstanceId,
    inst: Instance,
}

/// Member 0 of a 3-of-4 instance.
fn fixture() -> Fixture {
    let keys = keys(4, 1);
    let id = id_for(1);
    let auth = Arc::new(HmacAuth {
        me: 0,
        keys: keys.clone(),
    });
    let inst = Instance::new(id, members(4, 3, 0), TIMING, auth, 0);
    Fixture { keys, id, inst }
}

impl Fixture {
    fn msg(&self, from: usize, round: u32, body: Body) -> SignedMessage {
        sign_as(&self.keys, self.id, from, round, body)
    }

    fn leader(&self, round: u32) -> usize {
        (0..4)
            .find(|&l| {
                let mut other = fixture_for((l + 1) % 4, &self.keys);
                let m = self.msg(
                    l,
                    round,
                    Body::Proposal {
                        root: root(0),
                        justification: Vec::new(),
                    },
                );
                other.receive(m, 0)
                    != Err(Rejected::Invalid("proposal not from the round's leader"))
            })
            .expect("a leader")
    }

    fn rc(&self, from: usize, round: u32, prepared: Option<(u32, Root)>) -> SignedMessage {
        let proof = match prepared {
            Some((pr, pv)) => (1..4)
                .map(|i| self.msg(i, pr, Body::Prepare { root: pv }))
                .collect(),
            None => Vec::new(),
        };
        self.msg(
            from,
            round,
            Body::RoundChange {
                prepared: prepared.map(|(r, v)| (r, RootHex(v))),
                proof,
                input: Some(RootHex(root(from as u8 + 1))),
            },
        )
    }
}

fn fixture_for(me: usize, keys: &Arc<Vec<[u8; 32]>>) -> Instance {
    let auth = Arc::new(HmacAuth {
        me,
        keys: keys.clone(),
    });
    Instance::new(id_for(1), members(4, 3, me), TIMING, auth, 0)
}

#[test]
fn signing_bytes_injective_on_each_field() {
    let base_msg = Message {
        instance: id_for(1),
        round: 2,
        from: 1,
        body: Body::Prepare { root: root(1) },
    };
    let mut variants = vec![base_msg.clone()];
    let mut v = base_msg.clone();
    v.round = 3;
    variants.push(v);
    let mut v = base_msg.clone();
    v.from = 2;
    variants.push(v);
    let mut v = base_msg.clone();
    v.instance = id_for(2);
    variants.push(v);
    let mut v = base_msg.clone();
    v.instance.duty = Duty::Attestation { target_epoch: 1 };
    variants.push(v);
    let mut v = base_msg.clone();
    v.instance.validator = PublicKeyBytes([0xac; 48]);
    variants.push(v);
    for body in [
        Body::Prepare { root: root(2) },
        Body::Commit { root: root(1) },
        Body::Proposal {
            root: root(1),
            justification: Vec::new(),
        },
        Body::Decided {
            root: root(1),
            commits: Vec::new(),
        },
        Body::RoundChange {
            prepared: None,
            proof: Vec::new(),
            input: None,
        },
        Body::RoundChange {
            prepared: None,
            proof: Vec::new(),
            input: Some(RootHex(root(1))),
        },
        Body::RoundChange {
            prepared: Some((1, RootHex(root(1)))),
            proof: Vec::new(),
            input: None,
        },
        Body::RoundChange {
            prepared: Some((2, RootHex(root(1)))),
            proof: Vec::new(),
            input: None,
        },
        Body::RoundChange {
            prepared: Some((1, RootHex(root(2)))),
            proof: Vec::new(),
            input: None,
        },
        Body::RoundChange {
            prepared: Some((1, RootHex(root(1)))),
            proof: Vec::new(),
            input: Some(RootHex(root(1))),
        },
    ] {
        let mut v = base_msg.clone();
        v.body = body;
        variants.push(v);
    }
    let encodings: BTreeSet<Vec<u8>> = variants.iter().map(|m| m.signing_bytes(&DOMAIN)).collect();
    assert_eq!(encodings.len(), variants.len());
    // The domain is covered too, and the tag leads.
    assert_ne!(
        base_msg.signing_bytes(&DOMAIN),
        base_msg.signing_bytes(&[8u8; 32])
    );
    assert!(base_msg
        .signing_bytes(&DOMAIN)
        .starts_with(b"dvsigner-agreement-v1"));
    // Nested messages are not covered (each is signed by its own sender).
    let mut with_proof = variants[variants.len() - 1].clone();
    if let Body::RoundChange { proof, .. } = &mut with_proof.body {
        proof.push(SignedMessage {
            message: base_msg.clone(),
            signature: vec![1],
        });
    }
    assert_eq!(
        with_proof.signing_bytes(&DOMAIN),
        variants[variants.len() - 1].signing_bytes(&DOMAIN)
    );
}

#[test]
fn every_rejection_path() {
    let mut fx = fixture();
    // Wrong instance, non-member, bad signature, own message, round 0.
    let other = sign_as(&fx.keys, id_for(2), 1, 1, Body::Prepare { root: root(1) });
    assert_eq!(fx.inst.receive(other, 0), Err(Rejected::WrongInstance));
    let mut stranger = fx.msg(1, 1, Body::Prepare { root: root(1) });
    stranger.message.from = 4;
    assert_eq!(fx.inst.receive(stranger, 0), Err(Rejected::NotAMember));
    let mut forged = fx.msg(1, 1, Body::Prepare { root: root(1) });
    forged.message.body = Body::Prepare { root: root(2) };
    assert_eq!(fx.inst.receive(forged, 0), Err(Rejected::BadSignature));
    let mut by_other_key = fx.msg(2, 1, Body::Prepare { root: root(1) });
    by_other_key.message.from = 1;
    assert_eq!(
        fx.inst.receive(by_other_key, 0),
        Err(Rejected::BadSignature)
    );
    let own = fx.msg(0, 1, Body::Prepare { root: root(1) });
    assert_eq!(
        fx.inst.receive(own, 0),
        Err(Rejected::Invalid("own message"))
    );
    let zero = fx.msg(1, 0, Body::Prepare { root: root(1) });
    assert_eq!(fx.inst.receive(zero, 0), Err(Rejected::Invalid("round 0")));
    let far = fx.msg(1, 2 + MAX_ROUNDS_AHEAD, Body::Commit { root: root(1) });
    assert_eq!(
        fx.inst.receive(far, 0),
        Err(Rejected::Invalid("round too far ahead"))
    );
    let near = fx.msg(1, 1 + MAX_ROUNDS_AHEAD, Body::Commit { root: root(1) });
    assert_eq!(fx.inst.receive(near, 0), Ok(Vec::new()));

    // Duplicate and equivocation: the first one counts.
    let p = fx.msg(1, 1, Body::Prepare { root: root(1) });
    assert_eq!(fx.inst.receive(p.clone(), 0), Ok(Vec::new()));
    assert_eq!(fx.inst.receive(p, 0), Err(Rejected::Invalid("duplicate")));
    let p2 = fx.msg(1, 1, Body::Prepare { root: root(2) });
    assert_eq!(
        fx.inst.receive(p2, 0),
        Err(Rejected::Invalid("equivocation"))
    );
    let c = fx.msg(2, 1, Body::Commit { root: root(1) });
    assert_eq!(fx.inst.receive(c, 0), Ok(Vec::new()));
    let c2 = fx.msg(2, 1, Body::Commit { root: root(2) });
    assert_eq!(
        fx.inst.receive(c2, 0),
        Err(Rejected::Invalid("equivocation"))
    );
    // The equivocating prepare did not count: two prepares of root(2) from 2 and 3 plus
    // member 1's rejected one would have made a quorum.
    for from in [2, 3] {
        let m = fx.msg(from, 1, Body::Prepare { root: root(2) });
        let out = fx.inst.receive(m, 0).expect("accepted");
        assert!(sends(&out).is_empty(), "no quorum of root(2) prepares");
    }

    // Round changes.
    let rc1 = fx.msg(
        1,
        1,
        Body::RoundChange {
            prepared: None,
            proof: Vec::new(),
            input: None,
        },
    );
    assert_eq!(
        fx.inst.receive(rc1, 0),
        Err(Rejected::Invalid("round change to round 1"))
    );
    let junk_proof = fx.msg(
        1,
        2,
        Body::RoundChange {
            prepared: None,
            proof: vec![fx.msg(1, 1, Body::Prepare { root: root(1) })],
            input: None,
        },
    );
    assert_eq!(
        fx.inst.receive(junk_proof, 0),
        Err(Rejected::Invalid("proof without a prepared value"))
    );
    let mut not_below = fx.rc(1, 2, Some((1, root(1))));
    if let Body::RoundChange { prepared, .. } = &mut not_below.message.body {
        *prepared = Some((2, RootHex(root(1))));
    }
    let not_below = fx.msg(1, 2, not_below.message.body);
    assert_eq!(
        fx.inst.receive(not_below, 0),
        Err(Rejected::Invalid("prepared round not below the round"))
    );
    // A proof of only two prepares, of prepares of another root, or with a forged one.
    for bad in [
        vec![1, 2],
        vec![1, 2, 2],
        vec![1, 2, 3, 9],
        vec![1, 2, 3, 8],
    ] {
        let proof = bad
            .iter()
            .map(|&i| match i {
                9 => fx.msg(3, 1, Body::Prepare { root: root(7) }),
                8 => {
                    let mut m = fx.msg(3, 1, Body::Prepare { root: root(1) });
                    m.signature[0] ^= 1;
                    m
                }
                i => fx.msg(i, 1, Body::Prepare { root: root(1) }),
            })
            .collect();
        let m = fx.msg(
            1,
            2,
            Body::RoundChange {
                prepared: Some((1, RootHex(root(1)))),
                proof,
                input: None,
            },
        );
        assert_eq!(
            fx.inst.receive(m, 0),
            Err(Rejected::Invalid("prepared value without a valid proof")),
            "{bad:?}"
        );
    }
    let good = fx.rc(1, 2, Some((1, root(1))));
    assert_eq!(fx.inst.receive(good.clone(), 0), Ok(Vec::new()));
    assert_eq!(
        fx.inst.receive(good, 0),
        Err(Rejected::Invalid("duplicate"))
    );
    let other_rc = fx.rc(1, 2, None);
    assert_eq!(
        fx.inst.receive(other_rc, 0),
        Err(Rejected::Invalid("equivocation"))
    );

    // Proposals.
    let p1 = fx.msg(
        1,
        1,
        Body::Proposal {
            root: root(1),
            justification: Vec::new(),
        },
    );
    assert_eq!(
        fx.inst.receive(p1, 0),
        Err(Rejected::Invalid("proposal in round 1"))
    );
    // A round r >= 4 whose leader and whose previous round's leader are not member 0.
    let r = (4..12)
        .find(|&r| fx.leader(r) != 0 && fx.leader(r - 1) != 0)
        .expect("leaders rotate");
    let leader = fx.leader(r);
    let not_leader = (1..4).find(|&i| i != leader).expect("another member");
    let wrong = fx.msg(
        not_leader,
        r,
        Body::Proposal {
            root: root(1),
            justification: (1..4).map(|i| fx.rc(i, r, None)).collect(),
        },
    );
    assert_eq!(
        fx.inst.receive(wrong, 0),
        Err(Rejected::Invalid("proposal not from the round's leader"))
    );
    {
        let cases: Vec<(Vec<SignedMessage>, Root, &str)> = vec![
            (
                vec![fx.rc(1, r, None), fx.rc(2, r, None)],
                root(1),
                "justification without a quorum of round changes",
            ),
            (
                vec![fx.rc(1, r, None), fx.rc(1, r, None), fx.rc(2, r, None)],
                root(1),
                "justification with two round changes of one member",
            ),
            (
                (1..4).map(|i| fx.rc(i, r - 1, None)).collect(),
                root(1),
                "justification with a round change of another round",
            ),
            (
                vec![
                    fx.rc(1, r, None),
                    fx.rc(2, r, None),
                    fx.msg(3, r, Body::Commit { root: root(1) }),
                ],
                root(1),
                "justification with an unexpected message",
            ),
            (
                vec![
                    fx.rc(1, r, None),
                    fx.rc(2, r, None),
                    sign_as(&fx.keys, id_for(9), 3, r, fx.rc(3, r, None).message.body),
                ],
                root(1),
                "justification of another instance",
            ),
            (
                {
                    let mut j: Vec<_> = (1..4).map(|i| fx.rc(i, r, None)).collect();
                    j[2].signature[3] ^= 1;
                    j
                },
                root(1),
                "justification with a bad signature",
            ),
            (
                // Highest prepared (2, root(2)) but the proposal is root(1).
                {
                    let mut j: Vec<_> = vec![
                        fx.rc(1, r, Some((2, root(2)))),
                        fx.rc(2, r, Some((1, root(1)))),
                        fx.rc(3, r, None),
                    ];
                    j.extend((1..4).map(|i| fx.msg(i, 2, Body::Prepare { root: root(2) })));
                    j
                },
                root(1),
                "proposal differs from the highest prepared value",
            ),
            (
                // Highest prepared claimed without its prepares.
                vec![
                    fx.rc(1, r, Some((2, root(2)))),
                    fx.rc(2, r, None),
                    fx.rc(3, r, None),
                ],
                root(2),
                "highest prepared value without a valid proof",
            ),
            (
                // Two different values claimed prepared in the same round.
                vec![
                    fx.rc(1, r, Some((2, root(2)))),
                    fx.rc(2, r, Some((2, root(3)))),
                    fx.rc(3, r, None),
                ],
                root(2),
                "justification with conflicting prepared values",
            ),
            (
                {
                    let mut j: Vec<_> = (1..4).map(|i| fx.rc(i, r, None)).collect();
                    j.push(fx.msg(1, 1, Body::Prepare { root: root(1) }));
                    j
                },
                root(1),
                "justification with prepares but no prepared value",
            ),
            (
                (0..9).map(|i| fx.rc(1 + i % 3, r, None)).collect(),
                root(1),
                "justification too long",
            ),
        ];
        for (justification, proposed, why) in cases {
            let m = fx.msg(
                leader,
                r,
                Body::Proposal {
                    root: proposed,
                    justification,
                },
            );
            assert_eq!(fx.inst.receive(m, 0), Err(Rejected::Invalid(why)));
        }
        // A valid one: stripped round changes plus the highest prepared round's prepares.
        let mut j: Vec<_> = vec![
            fx.rc(1, r, Some((2, root(2)))),
            fx.rc(2, r, Some((1, root(1)))),
            fx.rc(3, r, None),
        ];
        for m in &mut j {
            if let Body::RoundChange { proof, .. } = &mut m.message.body {
                proof.clear();
            }
        }
        j.extend((1..4).map(|i| fx.msg(i, 2, Body::Prepare { root: root(2) })));
        let valid = fx.msg(
            leader,
            r,
            Body::Proposal {
                root: root(2),
                justification: j,
            },
        );
        let out = fx.inst.receive(valid.clone(), 0).expect("valid proposal");
        assert_eq!(fx.inst.round(), r, "jumped to the proposal's round");
        let prepares = sends(&out);
        assert_eq!(prepares.len(), 1);
        assert_eq!(prepares[0].message.body, Body::Prepare { root: root(2) });
        assert_eq!(
            fx.inst.receive(valid, 0),
            Err(Rejected::Invalid("duplicate"))
        );
        let again = fx.msg(
            leader,
            r,
            Body::Proposal {
                root: root(1),
                justification: (1..4).map(|i| fx.rc(i, r, None)).collect(),
            },
        );
        assert_eq!(
            fx.inst.receive(again, 0),
            Err(Rejected::Invalid("equivocation"))
        );
        // Past rounds.
        let old_prepare = fx.msg(1, 2, Body::Prepare { root: root(1) });
        assert_eq!(
            fx.inst.receive(old_prepare, 0),
            Err(Rejected::Invalid("prepare of a past round"))
        );
        let old_rc = fx.rc(2, 2, None);
        assert_eq!(
            fx.inst.receive(old_rc, 0),
            Err(Rejected::Invalid("round change of a past round"))
        );
        let old_leader = fx.leader(r - 1);
        let old_proposal = fx.msg(
            old_leader,
            r - 1,
            Body::Proposal {
                root: root(1),
                justification: Vec::new(),
            },
        );
        assert_eq!(
            fx.inst.receive(old_proposal, 0),
            Err(Rejected::Invalid("proposal of a past round"))
        );
    }

    // Decided without a valid quorum: too few commits, mixed roots, mixed rounds, duplicates.
    for (commits, round) in [
        (vec![(1, 1, 1), (2, 1, 1)], 1),
        (vec![(1, 1, 1), (2, 1, 1), (3, 1, 2)], 1),
        (vec![(1, 1, 1), (2, 1, 1), (3, 2, 1)], 1),
        (vec![(1, 1, 1), (2, 1, 1), (2, 1, 1)], 1),
        (vec![(1, 1, 1), (2, 1, 1), (3, 1, 1)], 2),
    ] {
        let commits = commits
            .iter()
            .map(|&(from, r, v)| fx.msg(from, r, Body::Commit { root: root(v) }))
            .collect();
        let m = fx.msg(
            1,
            round,
            Body::Decided {
                root: root(1),
                commits,
            },
        );
        assert_eq!(
            fx.inst.receive(m, 0),
            Err(Rejected::Invalid(
                "decision without a valid quorum of commits"
            ))
        );
    }
    assert!(fx.inst.decision().is_none());
    let commits: Vec<_> = (1..4)
        .map(|i| fx.msg(i, 1, Body::Commit { root: root(4) }))
        .collect();
    let m = fx.msg(
        2,
        1,
        Body::Decided {
            root: root(4),
            commits,
        },
    );
    let out = fx.inst.receive(m, 0).expect("valid decision");
    assert_eq!(decided(&out).map(|d| d.root), Some(root(4)));
    assert_eq!(fx.inst.next_deadline(), None);
}

/// A decided member answers a lagging member's messages with its decision, once per round of
/// theirs, and the laggard decides from it.
#[test]
fn decided_member_answers_laggards() {
    let keys = keys(4, 3);
    let mut insts: Vec<Instance> = (0..4).map(|i| fixture_for(i, &keys)).collect();
    let mut queue: Vec<(usize, SignedMessage)> = Vec::new();
    for (i, inst) in insts.iter_mut().enumerate().take(3) {
        for sm in sends(&inst.propose(root(1), 0)) {
            queue.extend((0..3).filter(|&to| to != i).map(|to| (to, sm.clone())));
        }
    }
    // Members 0..3 talk; member 3 hears nothing.
    while let Some((to, sm)) = queue.pop() {
        if let Ok(out) = insts[to].receive(sm, 1) {
            for sm in sends(&out) {
                queue.extend((0..3).filter(|&t| t != to).map(|t| (t, sm.clone())));
            }
        }
    }
    for inst in &insts[..3] {
        assert_eq!(inst.decision().map(|d| d.root), Some(root(1)));
    }
    assert!(insts[3].decision().is_none());
    // Member 3 times out and sends a round change; member 0 answers with its decision.
    let deadline = insts[3].next_deadline().expect("deadline");
    let rc = sends(&insts[3].tick(deadline));
    assert_eq!(rc.len(), 1);
    let answer = sends(&insts[0].receive(rc[0].clone(), deadline).expect("ok"));
    assert_eq!(answer.len(), 1);
    assert!(matches!(answer[0].message.body, Body::Decided { .. }));
    // A re-sent round change (the answer may have been lost) is answered again.
    let again = sends(&insts[0].receive(rc[0].clone(), deadline).expect("ok"));
    assert_eq!(again, answer);
    // A late commit of the decision round crossed the broadcast decision: no answer.
    let late = sign_as(&keys, id_for(1), 3, 1, Body::Commit { root: root(1) });
    assert_eq!(insts[0].receive(late, deadline), Ok(Vec::new()));
    // Another message of a round above the decision's: answered once per round.
    let above = sign_as(&keys, id_for(1), 3, 3, Body::Prepare { root: root(1) });
    let answered = sends(&insts[0].receive(above.clone(), deadline).expect("ok"));
    assert_eq!(answered, answer);
    assert_eq!(insts[0].receive(above, deadline), Ok(Vec::new()));
    let out = insts[3].receive(answer[0].clone(), deadline).expect("ok");
    assert_eq!(decided(&out).map(|d| d.root), Some(root(1)));
}

/// The timer: round 1 lasts round_ms from creation, round r lasts round_ms * 2^(r-1) capped,
/// and every expiry sends one round change for the next round; a round that fewer than Q
/// members are known to be in is not left on expiry (the member re-sends its round change and
/// waits), and its timer restarts when the Q-th member shows up.
#[test]
fn round_timers_double_up_to_the_cap() {
    let keys = keys(4, 4);
    let mut inst = fixture_for(1, &keys);
    assert_eq!(inst.next_deadline(), Some(200));
    assert!(inst.tick(199).is_empty());
    let rc = |from: usize, round: u32| {
        sign_as(
            &keys,
            id_for(1),
            from,
            round,
            Body::RoundChange {
                prepared: None,
                proof: Vec::new(),
                input: None,
            },
        )
    };
    let mut now = 200;
    for (round, len) in [(2, 400), (3, 800), (4, 1600), (5, 1600), (6, 1600)] {
        let out = sends(&inst.tick(now));
        assert_eq!(inst.round(), round);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].message.round, round);
        assert!(matches!(out[0].message.body, Body::RoundChange { .. }));
        assert_eq!(inst.next_deadline(), Some(now + len));
        // Only member 2 there: on expiry member 1 stays and re-sends its round change.
        inst.receive(rc(2, round), now).expect("round change");
        now += len;
        let again = sends(&inst.tick(now));
        assert_eq!(
            inst.round(),
            round,
            "stays while fewer than Q are in the round"
        );
        assert_eq!(again, out);
        assert_eq!(inst.next_deadline(), Some(now + len));
        // Member 3 arrives later: the round's timer restarts from then.
        now += 10;
        inst.receive(rc(3, round), now).expect("round change");
        assert_eq!(inst.next_deadline(), Some(now + len));
        now += len;
    }
}

/// A split round 1 ends as soon as no root can reach a quorum of prepares any more (not at the
/// timer); while the member not yet heard from could still make a quorum, it waits.
#[test]
fn a_lost_round_one_ends_before_its_timer() {
    // 2/2 split of 3-of-4: after the fourth prepare, member 0 moves to round 2 at once.
    let mut f = fixture();
    let _ = f.inst.propose(root(1), 0);
    let p = |f: &Fixture, from: usize, r: Root| f.msg(from, 1, Body::Prepare { root: r });
    let m = p(&f, 1, root(1));
    assert!(sends(&f.inst.receive(m, 5).expect("prepare")).is_empty());
    let m = p(&f, 2, root(2));
    // 2 for root 1, 1 for root 2, member 3 unheard: root 1 can still get 3.
    assert!(sends(&f.inst.receive(m, 6).expect("prepare")).is_empty());
    assert_eq!(f.inst.round(), 1);
    let m = p(&f, 3, root(2));
    let out = sends(&f.inst.receive(m, 7).expect("prepare"));
    assert_eq!(f.inst.round(), 2, "a 2/2 split cannot decide in round 1");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].message.round, 2);
    assert!(matches!(out[0].message.body, Body::RoundChange { .. }));

    // 1/1/1 with one member silent (3-of-4, member 0's client has not asked): with 3 prepares
    // for 3 different roots and one member unheard, no root can reach 3: round 2.
    let mut g = fixture();
    for (from, r) in [(1, 1u8), (2, 2)] {
        let m = p(&g, from, root(r));
        assert!(sends(&g.inst.receive(m, 5).expect("prepare")).is_empty());
        assert_eq!(g.inst.round(), 1, "two unheard members could still agree");
    }
    let m = p(&g, 3, root(3));
    let _ = g.inst.receive(m, 9).expect("prepare");
    assert_eq!(g.inst.round(), 2);

    // 2/1 with the fourth member silent (down): it could still make root 1's quorum: wait
    // for the timer.
    let mut h = fixture();
    let _ = h.inst.propose(root(1), 0);
    for (from, r) in [(1, 1u8), (2, 2)] {
        let m = p(&h, from, root(r));
        let _ = h.inst.receive(m, 5).expect("prepare");
    }
    assert_eq!(h.inst.round(), 1);
    assert_eq!(h.inst.next_deadline(), Some(TIMING.round_ms));
}

/// Members the transport cannot reach: a 2/1 round 1 with the fourth member unreachable ends
/// at once, and a round whose leader is unreachable is left as soon as Q members are in it
/// (they move on together); a proposal that did arrive from that leader is followed.
#[test]
fn unreachable_members_end_hopeless_rounds_early() {
    let p = |f: &Fixture, from: usize, r: Root| f.msg(from, 1, Body::Prepare { root: r });
    let mut f = fixture();
    let _ = f.inst.propose(root(1), 0);
    let m = p(&f, 1, root(1));
    let _ = f.inst.receive(m, 5).expect("prepare");
    let m = p(&f, 2, root(2));
    let _ = f.inst.receive(m, 6).expect("prepare");
    assert_eq!(
        f.inst.round(),
        1,
        "member 3 could still make root 1's quorum"
    );
    // The transport learns member 3 is unreachable; the next call applies it.
    f.inst.set_unreachable([3]);
    let _ = f.inst.tick(7);
    assert_eq!(
        f.inst.round(),
        2,
        "without member 3 no root reaches 3 prepares"
    );

    // Round 2's leader unreachable: member 0 (not the leader) leaves round 2 once Q members
    // are known to be in it, long before the round's timer.
    let g = fixture();
    let leader2 = g.leader(2);
    let me = (leader2 + 1) % 4;
    let mut inst = fixture_for(me, &g.keys);
    inst.set_unreachable([u16::try_from(leader2).expect("member")]);
    let others: Vec<usize> = (0..4).filter(|&m| m != me && m != leader2).collect();
    quorum_in_round_two(&mut inst, &g, &others);
    assert_eq!(
        inst.round(),
        3,
        "Q in round 2, its leader unreachable: round 3"
    );

    // Without the unreachable mark, the same member waits for round 2's proposal or timer.
    let mut patient = fixture_for(me, &g.keys);
    quorum_in_round_two(&mut patient, &g, &others);
    assert_eq!(patient.round(), 2);
}

/// Moves `inst` (round 1) into round 2 by its timer, then hands it the round-2 round changes of
/// `others` (with it a quorum of 3-of-4) at 210 and 220 ms; it is still in round 2 after the
/// first.
fn quorum_in_round_two(inst: &mut Instance, g: &Fixture, others: &[usize]) {
    let _ = inst.tick(TIMING.round_ms);
    assert_eq!(inst.round(), 2);
    let _ = inst
        .receive(g.rc(others[0], 2, None), 210)
        .expect("round change");
    assert_eq!(inst.round(), 2, "only 2 members known in round 2");
    let _ = inst
        .receive(g.rc(others[1], 2, None), 220)
        .expect("round change");
}

/// Clients racing up to three roots into a 3-of-4 cluster whose member 3 sits behind a 500 ms
/// link (messages and its client's requests reach it 500 ms late; it answers at once), with
/// 200 ms rounds, as in the race test's delayed-node condition. Knowing its round trips, a
/// member leaves a round led by the far member as soon as Q members are in it instead of
/// waiting out its timer (such a round cannot finish in 400 ms): the third decision (what a
/// combiner waits for) comes within 450 ms in every seed. Without the round trips (the engine
/// before this rule) the same seeds needed up to about a second: a round 2 led by the far
/// member was always lost, and load on a real node added the rest of the 1.5 s request timeout.
#[test]
fn a_far_leader_costs_no_round() {
    let mut worst = [0u64; 2];
    let mut rounds: [BTreeMap<u32, usize>; 2] = [BTreeMap::new(), BTreeMap::new()];
    let seeds = seeds(1000);
    for (k, informed) in [false, true].into_iter().enumerate() {
        for seed in seed_range(seeds) {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut s = base(4, 3, root(1));
            s.delay = (0, 20);
            s.slow_in = vec![0, 0, 0, 500];
            s.round_trips = informed;
            s.timing = Timing {
                round_ms: 200,
                max_round_ms: 3200,
            };
            for (i, input) in s.inputs.iter_mut().enumerate() {
                let late = if i == 3 { 500 } else { 0 };
                *input = Some((root(rng.gen_range(1..=3)), late + rng.gen_range(0..=50)));
            }
            let r = Sim::new(&s, seed).run();
            assert!(agreement_holds(&s, &r), "seed {seed}: {:?}", r.decisions);
            let mut at: Vec<u64> = r
                .decisions
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let (d, at) = d
                        .as_ref()
                        .unwrap_or_else(|| panic!("seed {seed}: {i} undecided"));
                    *rounds[k].entry(d.round).or_default() += 1;
                    *at
                })
                .collect();
            at.sort_unstable();
            worst[k] = worst[k].max(at[2]);
            if informed {
                assert!(
                    at[2] <= 450,
                    "seed {seed}: third decision at {} ms ({:?})",
                    at[2],
                    r.decisions
                        .iter()
                        .map(|d| d.as_ref().map(|(d, at)| (d.round, *at)))
                        .collect::<Vec<_>>()
                );
            }
        }
    }
    println!(
        "far member, {seeds} seeds: third decision at most {} ms without round trips, {} ms \
         with; decision rounds {:?} / {:?}",
        worst[0], worst[1], rounds[0], rounds[1]
    );
}

/// A round whose leader is too far away to finish it in the round's time (its round trip plus
/// a quorum's above the round's length) is left as soon as Q members are in it; a nearer
/// leader's round, a proposal that did arrive from the far leader, and rounds at the longest
/// length are waited for.
#[test]
fn a_far_leader_round_is_left_once_the_quorum_is_in_it() {
    let g = fixture();
    let leader2 = g.leader(2);
    let me = (leader2 + 1) % 4;
    let others: Vec<usize> = (0..4).filter(|&m| m != me && m != leader2).collect();
    let rtts = |far: u64| (0..4).map(move |m| Some(if m == leader2 { far } else { 10 }));
    // Round 2 lasts 2 * 200 ms; the leader's 500 ms round trip + 10 ms cannot fit.
    let in_round_two = |far: u64| {
        let mut inst = fixture_for(me, &g.keys);
        inst.set_round_trips(rtts(far));
        quorum_in_round_two(&mut inst, &g, &others);
        inst
    };
    assert_eq!(in_round_two(500).round(), 3, "far leader: round 3 at once");
    assert_eq!(
        in_round_two(391).round(),
        3,
        "391 + 10 ms does not fit in 400 ms"
    );
    assert_eq!(in_round_two(390).round(), 2, "390 + 10 ms fits: wait");
    let mut unmeasured = fixture_for(me, &g.keys);
    unmeasured.set_round_trips((0..4).map(|_| None));
    quorum_in_round_two(&mut unmeasured, &g, &others);
    assert_eq!(unmeasured.round(), 2, "unmeasured leader: wait");

    // The far leader's proposal is in: it is followed (prepared), not skipped.
    let mut inst = fixture_for(me, &g.keys);
    inst.set_round_trips(rtts(500));
    let _ = inst.tick(TIMING.round_ms);
    let justification: Vec<SignedMessage> = [others[0], others[1], leader2]
        .iter()
        .map(|&m| g.rc(m, 2, None))
        .collect();
    let proposal = g.msg(
        leader2,
        2,
        Body::Proposal {
            root: root(leader2 as u8 + 1),
            justification: justification.clone(),
        },
    );
    let out = sends(&inst.receive(proposal, 215).expect("proposal"));
    for rc in justification {
        let _ = inst.receive(rc, 220).expect("round change");
    }
    assert_eq!(inst.round(), 2);
    assert!(
        out.iter()
            .any(|m| matches!(m.message.body, Body::Prepare { .. })),
        "the proposal is prepared"
    );

    // At the longest round length rounds are never skipped (they must grow until any leader
    // can finish one): with rounds capped at 400 ms, round 2 is waited for.
    let auth = Arc::new(HmacAuth {
        me,
        keys: g.keys.clone(),
    });
    let capped = Timing {
        round_ms: 200,
        max_round_ms: 400,
    };
    let mut inst = Instance::new(id_for(1), members(4, 3, me), capped, auth, 0);
    inst.set_round_trips(rtts(500));
    quorum_in_round_two(&mut inst, &g, &others);
    assert_eq!(inst.round(), 2, "round 2 is as long as rounds get: wait");
}

/// Restore: the persisted state brings back the round, the input and the own messages; the
/// next tick re-sends the latest ones; no (round, step) is ever sent twice with different
/// content; a member that committed but lost its proof sends no round change claiming less.
#[test]
fn restore_rebuilds_own_state() {
    let keys = keys(4, 5);
    let mut a = fixture_for(0, &keys);
    let out = sends(&a.propose(root(1), 0));
    assert_eq!(out.len(), 1);
    // Prepares of root(2) from the others: member 0 commits root(2) in round 1.
    for i in 1..4 {
        let m = sign_as(&keys, id_for(1), i, 1, Body::Prepare { root: root(2) });
        let _ = a.receive(m, 5);
    }
    let p = a.persisted();
    assert_eq!(p.sent.len(), 2);
    assert_eq!(p.sent[1].message.body, Body::Commit { root: root(2) });
    let auth = Arc::new(HmacAuth {
        me: 0,
        keys: keys.clone(),
    });
    let mut b = Instance::restore(id_for(1), members(4, 3, 0), TIMING, auth, p.clone(), 10);
    assert_eq!(b.round(), 1);
    assert_eq!(b.persisted(), p);
    // Its client asks again (a different root): nothing new, the first input stands.
    assert!(b.propose(root(3), 11).is_empty());
    // Next tick re-sends the round-1 messages.
    assert_eq!(b.next_deadline(), Some(10));
    let resent = sends(&b.tick(12));
    assert_eq!(resent, p.sent);
    // Timer expiry: locked on (1, root(2)) without the proof, its round change claims the lock
    // without a proof; an undecided peer rejects it (it counts for nothing).
    let out = sends(&b.tick(10 + 200));
    assert_eq!(b.round(), 2);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].message.body,
        Body::RoundChange {
            prepared: Some((1, RootHex(root(2)))),
            proof: Vec::new(),
            input: Some(RootHex(root(1))),
        }
    );
    let mut peer = fixture_for(1, &keys);
    assert_eq!(
        peer.receive(out[0].clone(), 210),
        Err(Rejected::Invalid("prepared value without a valid proof"))
    );
    // A round change carrying a valid proof for round 1 gives it the proof back: its next round
    // change claims (1, root(2)).
    let proof: Vec<_> = (1..4)
        .map(|i| sign_as(&keys, id_for(1), i, 1, Body::Prepare { root: root(2) }))
        .collect();
    let rc = sign_as(
        &keys,
        id_for(1),
        1,
        3,
        Body::RoundChange {
            prepared: Some((1, RootHex(root(2)))),
            proof,
            input: None,
        },
    );
    b.receive(rc, 300).expect("valid round change");
    // Member 2 is in round 2 too: three members known in round 2, its timer runs from now.
    let rc2 = sign_as(
        &keys,
        id_for(1),
        2,
        2,
        Body::RoundChange {
            prepared: None,
            proof: Vec::new(),
            input: None,
        },
    );
    b.receive(rc2, 300).expect("valid round change");
    assert_eq!(b.next_deadline(), Some(300 + 400));
    let out = sends(&b.tick(300 + 400));
    assert_eq!(out.len(), 1);
    match &out[0].message.body {
        Body::RoundChange {
            prepared, input, ..
        } => {
            assert_eq!(*prepared, Some((1, RootHex(root(2)))));
            assert_eq!(*input, Some(RootHex(root(1))));
        }
        other => panic!("{other:?}"),
    }
    // With the proof, a peer accepts it.
    let mut peer = fixture_for(2, &keys);
    assert_eq!(peer.receive(out[0].clone(), 700), Ok(Vec::new()));
}

/// Random garbage (random fields, nested messages, signatures, huge rounds) never panics, and
/// random valid-signature messages from members never make two members decide differently.
#[test]
fn garbage_never_panics() {
    let keys = keys(4, 6);
    let mut rng = StdRng::seed_from_u64(99);
    let s = base(4, 3, root(1));
    let mut sim = Sim::new(&s, 6);
    sim.keys = keys.clone();
    for _ in 0..20_000 {
        let node = rng.gen_range(0..4);
        let round = rng.gen_range(1..100);
        let msg = sim.garbage(node, round);
        let me = rng.gen_range(0..4);
        let mut inst = fixture_for(me, &keys);
        if rng.gen_bool(0.5) {
            let _ = inst.propose(root(rng.gen()), 0);
        }
        let _ = inst.receive(msg.clone(), rng.gen());
        let _ = inst.tick(rng.gen());
        let _ = inst.receive(msg, u64::MAX);
        let _ = inst.next_deadline();
        let p = inst.persisted();
        let _ = Instance::restore(
            id_for(1),
            members(4, 3, me),
            TIMING,
            Arc::new(HmacAuth {
                me,
                keys: keys.clone(),
            }),
            p,
            u64::MAX,
        )
        .tick(u64::MAX);
    }
    // Degenerate memberships and timings do not panic either.
    for (n, q, me) in [(0, 0, 0), (1, 1, 0), (2, 5, 7), (4, 0, 1)] {
        let auth = Arc::new(HmacAuth {
            me: me % n.max(1),
            keys: keys.clone(),
        });
        let timing = Timing {
            round_ms: u64::MAX,
            max_round_ms: 0,
        };
        let mut inst = Instance::new(id_for(1), members(n, q, me), timing, auth, u64::MAX);
        let _ = inst.propose(root(1), u64::MAX);
        let _ = inst.tick(u64::MAX);
        let m = sign_as(&keys, id_for(1), 1, 2, Body::Prepare { root: root(1) });
        let _ = inst.receive(m, u64::MAX);
    }
}

/// A member that decides on a quorum of commits sends its `Decided` message only to the
/// members whose commit it does not hold (they may lack the commits); the others decide on the
/// same commits by themselves. A member that missed a commit and moves on to round 2 gets the
/// decision in answer to its round change.
#[test]
fn decided_goes_only_to_members_without_a_commit() {
    let keys = keys(4, 8);
    let mut a = fixture_for(0, &keys);
    assert_eq!(sends(&a.propose(root(1), 0)).len(), 1);
    for i in 1..3 {
        let m = sign_as(&keys, id_for(1), i, 1, Body::Prepare { root: root(1) });
        let _ = a.receive(m, 5);
    }
    // Prepared: member 0 has sent its commit.
    assert_eq!(a.persisted().sent.len(), 2);
    let commit = |i: usize| sign_as(&keys, id_for(1), i, 1, Body::Commit { root: root(1) });
    assert!(decided(&a.receive(commit(1), 6).expect("commit")).is_none());
    let out = a.receive(commit(2), 7).expect("commit");
    assert_eq!(decided(&out).map(|d| (d.root, d.round)), Some((root(1), 1)));
    let targeted: Vec<(Vec<u16>, Body)> = out
        .iter()
        .filter_map(|o| match o {
            Output::SendTo(to, sm) => Some((to.clone(), sm.message.body.clone())),
            _ => None,
        })
        .collect();
    assert!(
        !out.iter().any(|o| matches!(o, Output::Send(_))),
        "no broadcast: {out:?}"
    );
    assert_eq!(targeted.len(), 1, "{out:?}");
    assert_eq!(targeted[0].0, vec![3], "only member 3 sent no commit");
    assert!(matches!(targeted[0].1, Body::Decided { root: r, .. } if r == root(1)));
    // Member 2 missed a commit and moves on: its round change is answered with the decision.
    let rc = sign_as(
        &keys,
        id_for(1),
        2,
        2,
        Body::RoundChange {
            prepared: None,
            proof: Vec::new(),
            input: Some(RootHex(root(1))),
        },
    );
    let answer = sends(&a.receive(rc, 300).expect("round change"));
    assert!(
        matches!(answer.as_slice(), [sm] if matches!(sm.message.body, Body::Decided { .. })),
        "{answer:?}"
    );

    // Commits that came in before this member was prepared count too: with those of members
    // 1 and 3 held, its own commit completes the quorum and only member 2 is told.
    let mut b = fixture_for(0, &keys);
    let _ = b.propose(root(1), 0);
    let _ = b.receive(commit(3), 1);
    let _ = b.receive(commit(1), 2);
    let mut out = Vec::new();
    for i in 1..3 {
        let m = sign_as(&keys, id_for(1), i, 1, Body::Prepare { root: root(1) });
        out.extend(b.receive(m, 5).expect("prepare"));
    }
    assert!(decided(&out).is_some());
    let to: Vec<&Vec<u16>> = out
        .iter()
        .filter_map(|o| match o {
            Output::SendTo(to, sm) if matches!(sm.message.body, Body::Decided { .. }) => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(to, vec![&vec![2u16]]);
}

/// An [`HmacAuth`] that counts its signature checks.
struct CountingAuth {
    inner: HmacAuth,
    checks: std::sync::atomic::AtomicUsize,
}

impl Authenticator for CountingAuth {
    fn sign(&self, bytes: &[u8]) -> Vec<u8> {
        self.inner.sign(bytes)
    }
    fn verify(&self, member: usize, bytes: &[u8], signature: &[u8]) -> bool {
        self.checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.verify(member, bytes, signature)
    }
}

/// Member 0 of a 3-of-4 instance whose authenticator counts its checks.
fn counting_fixture() -> (Fixture, Arc<CountingAuth>) {
    let keys = keys(4, 1);
    let id = id_for(1);
    let auth = Arc::new(CountingAuth {
        inner: HmacAuth {
            me: 0,
            keys: keys.clone(),
        },
        checks: std::sync::atomic::AtomicUsize::new(0),
    });
    let inst = Instance::new(id, members(4, 3, 0), TIMING, auth.clone(), 0);
    (Fixture { keys, id, inst }, auth)
}

fn checks(auth: &CountingAuth) -> usize {
    auth.checks.load(std::sync::atomic::Ordering::Relaxed)
}

/// What is refused or ignored anyway costs no signature check: duplicates, messages of past
/// rounds, late prepares and commits of a decided instance, a `Decided` after the decision.
/// Whatever is acted on is checked first: a forged prepare, a forged equivocation, a forged
/// round change to a decided instance (it would be answered) are refused as bad signatures.
#[test]
fn signatures_are_checked_only_for_what_is_acted_on() {
    let (mut fx, auth) = counting_fixture();
    let _ = fx.inst.propose(root(1), 0);
    let p1 = fx.msg(1, 1, Body::Prepare { root: root(1) });
    fx.inst.receive(p1.clone(), 1).expect("first prepare");
    assert_eq!(checks(&auth), 1, "a new prepare is checked");
    assert_eq!(fx.inst.receive(p1, 2), Err(Rejected::Invalid("duplicate")));
    assert_eq!(checks(&auth), 1, "a duplicate is not checked again");
    let mut forged = fx.msg(1, 1, Body::Prepare { root: root(2) });
    forged.signature = vec![0; 32];
    assert_eq!(fx.inst.receive(forged, 3), Err(Rejected::BadSignature));
    let equivocation = fx.msg(1, 1, Body::Prepare { root: root(2) });
    assert_eq!(
        fx.inst.receive(equivocation, 3),
        Err(Rejected::Invalid("equivocation"))
    );
    let mut forged_new = fx.msg(2, 1, Body::Prepare { root: root(1) });
    forged_new.signature = vec![0; 32];
    assert_eq!(fx.inst.receive(forged_new, 4), Err(Rejected::BadSignature));
    // Decide: prepares and commits of members 1 and 2.
    fx.inst
        .receive(fx.msg(2, 1, Body::Prepare { root: root(1) }), 5)
        .expect("prepare");
    for from in [1, 2] {
        let _ = fx
            .inst
            .receive(fx.msg(from, 1, Body::Commit { root: root(1) }), 6);
    }
    let decision = fx.inst.decision().cloned().expect("decided");
    assert_eq!(decision.root, root(1));
    let before = checks(&auth);
    // Late messages of the decision round, and a decision again, even unsigned: ignored
    // without a check.
    let mut late_commit = fx.msg(3, 1, Body::Commit { root: root(1) });
    late_commit.signature = vec![0; 32];
    assert_eq!(fx.inst.receive(late_commit, 7), Ok(Vec::new()));
    let late_prepare = fx.msg(3, 1, Body::Prepare { root: root(1) });
    assert_eq!(fx.inst.receive(late_prepare, 7), Ok(Vec::new()));
    let mut again = fx.msg(
        3,
        1,
        Body::Decided {
            root: root(1),
            commits: decision.commits.clone(),
        },
    );
    again.signature = vec![0; 32];
    assert_eq!(fx.inst.receive(again, 7), Ok(Vec::new()));
    assert_eq!(checks(&auth), before, "nothing acted on, nothing checked");
    // A round change would be answered with the decision: checked, and a forged one refused.
    let rc = Body::RoundChange {
        prepared: None,
        proof: Vec::new(),
        input: None,
    };
    let mut forged_rc = fx.msg(3, 2, rc.clone());
    forged_rc.signature = vec![0; 32];
    assert_eq!(fx.inst.receive(forged_rc, 8), Err(Rejected::BadSignature));
    let answered = fx.inst.receive(fx.msg(3, 2, rc), 8).expect("answered");
    assert!(
        answered.iter().any(
            |o| matches!(o, Output::Send(sm) if matches!(sm.message.body, Body::Decided { .. }))
        ),
        "{answered:?}"
    );
}

/// A `Decided` message is taken on its commits alone: its own signature may be anything, a
/// quorum of valid commits decides and a forged commit among them refuses it.
#[test]
fn a_decision_stands_on_its_commits() {
    let fx = fixture();
    let commits: Vec<SignedMessage> = (1..4)
        .map(|from| fx.msg(from, 2, Body::Commit { root: root(5) }))
        .collect();
    let decided = |commits: Vec<SignedMessage>| {
        let mut m = fx.msg(
            3,
            2,
            Body::Decided {
                root: root(5),
                commits,
            },
        );
        m.signature = vec![7; 3];
        m
    };
    let mut bad = commits.clone();
    bad[1].signature = vec![0; 32];
    let mut inst = fixture_for(0, &fx.keys);
    assert_eq!(
        inst.receive(decided(bad), 1),
        Err(Rejected::Invalid(
            "decision without a valid quorum of commits"
        ))
    );
    assert!(inst.decision().is_none());
    inst.receive(decided(commits), 2).expect("decided");
    assert_eq!(
        inst.decision().map(|d| (d.root, d.round)),
        Some((root(5), 2))
    );
}
