//! Resharing (`dvsigner reshare`): move existing validators to a new operator
//! set and/or threshold without changing their group public keys.
//!
//! Protocol (the standard reshare of a Shamir/Feldman sharing: Desmedt & Jajodia 1997
//! "Redistributing secret shares to new access structures"; Wong, Wang & Wing 2002 "Verifiable
//! secret redistribution for archive systems"), per validator, between the old operators that
//! deal (the *dealers*) and the *new operators* of a [`ReshareDefinition`]:
//!
//! 1. **keys**: every new operator publishes one X25519 public key per dealer ([`super::seal`]).
//! 2. **dealings**: dealer `i` with old share `s_i` (old index `i`) draws a random polynomial
//!    `f_i` of degree `t' - 1` with `f_i(0) = s_i` ([`Polynomial::with_constant`]), publishes its
//!    Feldman commitments `C_{i,k}` and seals `f_i(j)` for every new operator `j` (new index =
//!    position in the definition + 1).
//! 3. **complaints**: everyone checks that each dealer's constant commitment `C_{i,0}` equals
//!    the dealer's share public key in the old `cluster.json` (a dealer can re-share nothing
//!    but its real share, so no proof of possession is needed: the old cluster fixes `C_{i,0}`),
//!    and every new operator checks `f_i(j) G1 = sum_k j^k C_{i,k}`. Complaints are published;
//!    a named dealer aborts the reshare (default) or, with `"on_misbehaviour": "disqualify"`,
//!    is left out.
//! 4. **combination**: the dealer set of a validator with old threshold `t` is
//!    `Q` = the first `t` dealers, in the definition's order, that nobody complained about
//!    (every operator sees the same complaints, so every operator picks the same `Q`; dealers
//!    beyond the first `t` are spares for `disqualify`). With `lambda_i` the Lagrange
//!    coefficients at 0 for the OLD indices in `Q`, new operator `j`'s share is
//!    `s'_j = sum_{i in Q} lambda_i f_i(j)` and the new commitments are
//!    `C'_k = sum_{i in Q} lambda_i C_{i,k}` ([`interpolate_shares`],
//!    [`interpolate_commitments`]); `C'_0 = sum lambda_i s_i G1` is the old group key, which
//!    is checked (abort otherwise). Every participant builds the new `cluster.json`; each new
//!    operator publishes its hash and a partial signature per validator over [`check_root`],
//!    which everyone verifies against the new share keys and combines under the group key,
//!    so the new sharing is proven to sign before anything is written.
//! 5. **confirmation**: everyone exchanges the `cluster.json` hash; any difference aborts.
//!
//! Transport, sealing, progress, abort propagation and output staging are the DKG's
//! (`ceremony.rs`, [`super::output`]); messages are served at the same
//! `/dkg/v1/round/{n}` paths, and the ceremony id (hash of the definition, which names the
//! old `cluster.json` by its hash) separates them from any other ceremony.
//!
//! Invariants: old shares, polynomial coefficients and received values live in zeroizing
//! types; the group secret is never computed; an operator leaving the set receives and writes
//! nothing. A reshare does not revoke the old shares: `t` old shares still sign under the
//! same key, so operators must destroy them once the new cluster runs (README "Resharing").

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use zeroize::Zeroizing;

use super::ceremony::{
    complaint_round, fail, open, open_dealt, same_result, Fault, Linger, Net, Round, Timeouts,
    ROUND_CONFIRM, ROUND_DEALINGS, ROUND_KEYS,
};
use super::definition::{check_operators, valid_name, CeremonyOperator, OnMisbehaviour};
use super::seal::{seal, OpeningKey};
use super::wire::{Complaint, Keys, ReshareCheck, ReshareConfirmation, ReshareDealing};
use super::Error;
use crate::bls::{Signature, SigningRoot};
use crate::cluster::{CaSource, ClusterDefinition, Operator, ShareDefinition, ValidatorDefinition};
use crate::keys::SecretKey;
use crate::threshold::{
    self, interpolate_commitments, interpolate_shares, Commitments, KeyShare, Polynomial,
    ShareIndex,
};
use crate::tls::Fingerprint;

/// The reshare definition format version this build understands.
pub const RESHARE_VERSION: u32 = 1;

const ROUND_CHECK: Round = (4, "4/5 (new share check)");

/// An old operator that deals its shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dealer {
    /// Its operator name in the old `cluster.json`.
    pub name: String,
    /// Its ceremony endpoint, `https://host:port`; omit when the dealer is also a new operator
    /// (its `operators` entry gives it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// SHA-256 fingerprint of its TLS certificate (omit as for `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<Fingerprint>,
    /// CA that issued its TLS certificate (omit as for `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<CaSource>,
}

/// The reshare definition every participant runs with (strict serde).
///
/// ```json
/// {
///   "version": 1,
///   "name": "add-operator-e",
///   "old_cluster_hash": "0x…",
///   "dealers": [ { "name": "a" }, { "name": "b" },
///                { "name": "d", "url": "https://d:9500", "tls_fingerprint": "AB:…" } ],
///   "operators": [
///     { "name": "a", "url": "https://a:9500", "node_url": "https://a:9000", "tls_fingerprint": "…" }
///   ],
///   "threshold": 3,
///   "on_misbehaviour": "abort"
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReshareDefinition {
    /// Format version, [`RESHARE_VERSION`].
    pub version: u32,
    /// A label for humans (part of the ceremony id).
    pub name: String,
    /// [`ClusterDefinition::hash`] of the existing `cluster.json` (`0x` hex).
    pub old_cluster_hash: String,
    /// The old operators that deal, in the order that picks the dealer set (at least the old
    /// threshold of them; each holds a share of every validator).
    pub dealers: Vec<Dealer>,
    /// The new operator set; new share index = position + 1.
    pub operators: Vec<CeremonyOperator>,
    /// The new threshold t', a strict majority of the new operators.
    pub threshold: u32,
    /// What to do with a misbehaving dealer.
    #[serde(default)]
    pub on_misbehaviour: OnMisbehaviour,
}

impl ReshareDefinition {
    /// Parses and checks definition JSON (not yet against the old cluster, see
    /// [`ReshareDefinition::check_against`]).
    ///
    /// # Errors
    /// [`Error::DefinitionJson`] for bad JSON or unknown fields, [`Error::Definition`] for
    /// failed checks.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let d: Self = serde_json::from_str(text)?;
        d.check()?;
        Ok(d)
    }

    /// Checks: version; a name; the new operators and threshold as for a DKG (2..=64 unique
    /// names, https ceremony URLs, `n'/2 < t' <= n'`); the old cluster hash's form; at least
    /// one dealer, names unique; a dealer that is also a new operator repeats nothing or the
    /// same endpoint and identity, any other dealer has an https `url`.
    ///
    /// # Errors
    /// [`Error::Definition`] naming the first failed check.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Definition(m));
        if self.version != RESHARE_VERSION {
            return bad(format!(
                "version {} (this build reads {RESHARE_VERSION})",
                self.version
            ));
        }
        if self.name.is_empty() {
            return bad("empty name".into());
        }
        check_operators(&self.operators, self.threshold)?;
        let hash_ok = self.old_cluster_hash.len() == 66
            && self.old_cluster_hash.starts_with("0x")
            && self.old_cluster_hash[2..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit());
        if !hash_ok {
            return bad(format!(
                "old_cluster_hash {:?} is not 0x and 64 hex digits",
                self.old_cluster_hash
            ));
        }
        if self.dealers.is_empty() {
            return bad("no dealers".into());
        }
        let mut names = BTreeSet::new();
        for d in &self.dealers {
            if !valid_name(&d.name) {
                return bad(format!("invalid dealer name {:?}", d.name));
            }
            if !names.insert(d.name.as_str()) {
                return bad(format!("dealer {} listed twice", d.name));
            }
            match self.operators.iter().find(|o| o.name == d.name) {
                Some(o) => {
                    let same = d.url.as_ref().is_none_or(|u| *u == o.url)
                        && d.tls_fingerprint
                            .is_none_or(|f| Some(f) == o.tls_fingerprint)
                        && d.tls_ca
                            .as_ref()
                            .is_none_or(|c| Some(c) == o.tls_ca.as_ref());
                    if !same {
                        return bad(format!(
                            "dealer {} is also a new operator but its url or TLS identity differs",
                            d.name
                        ));
                    }
                }
                None => match &d.url {
                    Some(u) if u.starts_with("https://") => {}
                    Some(u) => return bad(format!("dealer {}: url {u:?} is not https", d.name)),
                    None => {
                        return bad(format!(
                            "dealer {} is not a new operator, so it needs a url",
                            d.name
                        ))
                    }
                },
            }
        }
        Ok(())
    }

    /// Checks the definition against the old cluster: its hash is `old_cluster_hash`; every
    /// dealer is an old operator holding a share of every validator; there are at least as
    /// many dealers as the largest old threshold.
    ///
    /// # Errors
    /// [`Error::Definition`] naming the first failed check.
    pub fn check_against(&self, old: &ClusterDefinition) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Definition(m));
        let found = old.hash().to_string();
        if !found.eq_ignore_ascii_case(&self.old_cluster_hash) {
            return bad(format!(
                "the old cluster.json has hash {found}, the definition names {}",
                self.old_cluster_hash
            ));
        }
        if old.validators().is_empty() {
            return bad("the old cluster.json has no validators".into());
        }
        for d in &self.dealers {
            for v in old.validators() {
                if !v.shares.iter().any(|s| s.operator == d.name) {
                    return bad(format!(
                        "dealer {} holds no share of validator {} in the old cluster.json",
                        d.name,
                        v.group_pubkey.bytes()
                    ));
                }
            }
        }
        let needed = old
            .validators()
            .iter()
            .map(|v| v.threshold)
            .max()
            .unwrap_or(0);
        if self.dealers.len() < needed as usize {
            return bad(format!(
                "{} dealer(s); the old threshold needs {needed}",
                self.dealers.len()
            ));
        }
        Ok(())
    }

    /// The ceremony id: SHA-256 of the compact serialization, `0x` hex.
    pub fn id(&self) -> String {
        // invariant: strings, numbers and hex only, so serialization cannot fail.
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("0x{}", hex::encode(Sha256::digest(json.as_bytes())))
    }

    /// Every participant's ceremony endpoint and TLS identity (`url` is the ceremony URL): the
    /// new operators in order, then the dealers leaving the set.
    pub fn endpoints(&self) -> Vec<Operator> {
        let mut out: Vec<Operator> = self
            .operators
            .iter()
            .map(|o| Operator {
                name: o.name.clone(),
                url: o.url.clone(),
                tls_fingerprint: o.tls_fingerprint,
                tls_ca: o.tls_ca.clone(),
            })
            .collect();
        for d in &self.dealers {
            if !self.is_new_operator(&d.name) {
                out.push(Operator {
                    name: d.name.clone(),
                    url: d.url.clone().unwrap_or_default(),
                    tls_fingerprint: d.tls_fingerprint,
                    tls_ca: d.tls_ca.clone(),
                });
            }
        }
        out
    }

    /// The new operators as the new `cluster.json` lists them (node URL and TLS identity).
    pub fn cluster_operators(&self) -> Vec<Operator> {
        self.operators
            .iter()
            .map(|o| Operator {
                name: o.name.clone(),
                url: o.node_url.clone(),
                tls_fingerprint: o.tls_fingerprint,
                tls_ca: o.tls_ca.clone(),
            })
            .collect()
    }

    /// The new share index of a new operator.
    pub fn new_index(&self, name: &str) -> Option<ShareIndex> {
        let pos = self.operators.iter().position(|o| o.name == name)?;
        ShareIndex::new(pos as u64 + 1)
    }

    /// Whether `name` is in the new operator set.
    pub fn is_new_operator(&self, name: &str) -> bool {
        self.operators.iter().any(|o| o.name == name)
    }

    /// Whether `name` deals.
    pub fn is_dealer(&self, name: &str) -> bool {
        self.dealers.iter().any(|d| d.name == name)
    }
}

/// The root every new operator signs with its new share of validator `validator` (position in
/// the old cluster) so everyone can check the new sharing before writing: SHA-256 of a
/// domain-separated string naming the ceremony, never a valid Ethereum signing root.
pub fn check_root(ceremony: &str, validator: usize) -> SigningRoot {
    SigningRoot(
        Sha256::digest(format!("dvsigner-reshare-check-v1|{ceremony}|{validator}").as_bytes())
            .into(),
    )
}

fn seal_context(ceremony: &str, dealer: &str, receiver: &str) -> String {
    format!("dvsigner-reshare-shares-v1|{ceremony}|{dealer}|{receiver}")
}

/// One operator's part in a reshare.
#[derive(Debug)]
pub struct ReshareParticipant {
    /// The definition (checked again here).
    pub definition: ReshareDefinition,
    /// The existing cluster (its hash must be the definition's `old_cluster_hash`).
    pub old_cluster: ClusterDefinition,
    /// A dealer's old share keys (any order, matched by public key); empty otherwise.
    pub old_shares: Vec<SecretKey>,
    /// Our operator name.
    pub me: String,
    /// Where our ceremony server listens.
    pub listener: TcpListener,
    /// Our server's TLS (requiring peers' client certificates).
    pub server_tls: Arc<rustls::ServerConfig>,
    /// An mTLS client per other participant, trusting that participant's server identity.
    pub clients: BTreeMap<String, reqwest::Client>,
    /// Bounded waits.
    pub timeouts: Timeouts,
    /// Test-only fault.
    pub fault: Option<Fault>,
}

/// What a successful reshare gives one participant.
#[derive(Debug)]
pub struct ReshareOutput {
    /// The new cluster definition (same group keys, new operators, shares and threshold).
    pub cluster: ClusterDefinition,
    /// Our new share of each validator, in cluster order; empty for a dealer leaving the set.
    pub shares: Vec<KeyShare>,
    /// Per validator, the dealers whose sharings were combined.
    pub dealers: Vec<Vec<String>>,
    /// Keeps serving our confirmation until every peer fetched it; see [`Linger::finish`].
    pub linger: Linger,
}

/// Runs the reshare as `participant.me`. On failure the reason is published to peers and the
/// server stops; on success the server keeps serving our confirmation until
/// [`Linger::finish`].
///
/// # Errors
/// [`Error::Definition`] / [`Error::UnknownOperator`] / [`Error::MissingOldShare`] before any
/// network traffic; then any ceremony [`Error`], naming the operator at fault when there is
/// one.
pub async fn run(participant: ReshareParticipant) -> Result<ReshareOutput, Error> {
    let ReshareParticipant {
        definition,
        old_cluster,
        old_shares,
        me,
        listener,
        server_tls,
        clients,
        timeouts,
        fault,
    } = participant;
    definition.check()?;
    definition.check_against(&old_cluster)?;
    let endpoints: BTreeMap<String, String> = definition
        .endpoints()
        .into_iter()
        .map(|o| (o.name, o.url))
        .collect();
    if !endpoints.contains_key(&me) {
        return Err(Error::UnknownOperator(me));
    }
    let mine = if definition.is_dealer(&me) {
        Some(my_old_shares(&old_cluster, &me, old_shares)?)
    } else {
        None
    };
    let (net, linger) = open(
        definition.id(),
        &me,
        endpoints,
        listener,
        server_tls,
        clients,
        timeouts,
    );
    tracing::info!(ceremony = %net.id, operator = %me, "reshare started");
    match protocol(&definition, &old_cluster, mine, &net, fault.as_ref()).await {
        Ok((cluster, shares, dealers)) => Ok(ReshareOutput {
            cluster,
            shares,
            dealers,
            linger,
        }),
        Err(e) => Err(fail(&net, linger, e).await),
    }
}

/// A dealer's old share of each validator, in cluster order: (old index, key).
fn my_old_shares(
    old: &ClusterDefinition,
    me: &str,
    keys: Vec<SecretKey>,
) -> Result<Vec<(ShareIndex, SecretKey)>, Error> {
    let mut by_pk: BTreeMap<_, SecretKey> = keys
        .into_iter()
        .map(|k| (k.public_key().bytes(), k))
        .collect();
    let mut out = Vec::with_capacity(old.validators().len());
    for v in old.validators() {
        let share = v
            .shares
            .iter()
            .find(|s| s.operator == me)
            .and_then(|s| Some((s.index, by_pk.remove(&s.pubkey.bytes())?)))
            .ok_or_else(|| Error::MissingOldShare {
                validator: v.group_pubkey.bytes().to_string(),
            })?;
        out.push(share);
    }
    Ok(out)
}

type Outcome = (ClusterDefinition, Vec<KeyShare>, Vec<Vec<String>>);

/// What a participant holds of one dealer's dealing: its commitments per validator and, for a
/// new operator, the values dealt to it per validator.
type Held = (Vec<Commitments>, Vec<SecretKey>);

async fn protocol(
    def: &ReshareDefinition,
    old: &ClusterDefinition,
    mine: Option<Vec<(ShareIndex, SecretKey)>>,
    net: &Net,
    fault: Option<&Fault>,
) -> Result<Outcome, Error> {
    let me = net.me.as_str();
    let v_count = old.validators().len();
    let t_new = def.threshold;
    let my_new = def.new_index(me);
    let dealer_names: Vec<String> = def.dealers.iter().map(|d| d.name.clone()).collect();
    let malformed = |operator: &str, round: Round, reason: String| Error::Malformed {
        operator: operator.to_owned(),
        round: round.1,
        reason,
    };

    // Round 1: a new operator publishes an opening key per (other) dealer.
    let mut opening: BTreeMap<String, OpeningKey> = BTreeMap::new();
    if my_new.is_some() {
        for d in dealer_names.iter().filter(|d| *d != me) {
            opening.insert(d.clone(), OpeningKey::generate()?);
        }
    }
    net.publish(
        ROUND_KEYS,
        Keys {
            keys: opening
                .iter()
                .map(|(p, k)| (p.clone(), hex::encode(k.public())))
                .collect(),
        },
    )?;
    let peer_keys: BTreeMap<String, Keys> = net.collect(ROUND_KEYS).await?;

    // Round 2: a dealer re-shares its old share of every validator.
    let mut held: BTreeMap<String, Held> = BTreeMap::new();
    if let Some(mine) = &mine {
        let mut polys = Vec::with_capacity(v_count);
        for (v, (_, secret)) in mine.iter().enumerate() {
            polys.push(if v == 0 && fault == Some(&Fault::WrongSecret) {
                Polynomial::random(t_new)?
            } else {
                Polynomial::with_constant(secret, t_new)?
            });
        }
        let mut sealed = BTreeMap::new();
        for receiver in def.operators.iter().map(|o| &o.name).filter(|r| *r != me) {
            let keys = peer_keys
                .get(receiver)
                .ok_or_else(|| malformed(receiver, ROUND_KEYS, "no keys".into()))?;
            let key_hex = keys
                .keys
                .get(me)
                .ok_or_else(|| malformed(receiver, ROUND_KEYS, format!("no key for {me}")))?;
            let key = crate::bls::parse_hex::<32>(key_hex)
                .map_err(|e| malformed(receiver, ROUND_KEYS, e.to_string()))?;
            let j = def
                .new_index(receiver)
                .ok_or_else(|| Error::UnknownOperator(receiver.clone()))?;
            let corrupt = matches!(fault, Some(Fault::CorruptShareFor(x)) if x == receiver);
            let eval_at = if corrupt {
                ShareIndex::new(j.get() + 100).ok_or(Error::FaultInjected)?
            } else {
                j
            };
            let mut plain = Zeroizing::new(Vec::with_capacity(32 * v_count));
            for poly in &polys {
                plain.extend_from_slice(poly.evaluate(eval_at)?.expose_secret().as_ref());
            }
            sealed.insert(
                receiver.clone(),
                seal(&key, &plain, &seal_context(&net.id, me, receiver))?,
            );
        }
        let own: Vec<SecretKey> = match my_new {
            Some(j) => polys
                .iter()
                .map(|p| p.evaluate(j))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let commitments: Vec<Commitments> = polys.iter().map(|p| p.commitments().clone()).collect();
        drop(polys);
        held.insert(me.to_owned(), (commitments.clone(), own));
        net.publish(
            ROUND_DEALINGS,
            ReshareDealing {
                commitments,
                shares: sealed,
            },
        )?;
        if fault == Some(&Fault::StopAfterDealing) {
            net.wait_fetched_by_all(ROUND_DEALINGS).await;
            return Err(Error::FaultInjected);
        }
    }
    let other_dealers: Vec<String> = dealer_names.iter().filter(|d| *d != me).cloned().collect();
    let dealings: BTreeMap<String, ReshareDealing> =
        net.collect_from(ROUND_DEALINGS, &other_dealers).await?;

    // Check every dealing's public part, and the values dealt to us.
    let mut complaints = Vec::new();
    for (dealer, dealing) in dealings {
        let opener = opening.remove(&dealer);
        let checked =
            check_public(old, &dealer, t_new, &dealing.commitments).and_then(|()| match my_new {
                Some(j) => open_dealt(
                    net,
                    &seal_context(&net.id, &dealer, &net.me),
                    j,
                    &dealing.shares,
                    &dealing.commitments,
                    opener,
                    "value",
                ),
                None => Ok(Vec::new()),
            });
        match checked {
            Ok(values) => {
                held.insert(dealer, (dealing.commitments, values));
            }
            Err(reason) => {
                tracing::warn!(%dealer, %reason, "invalid dealing");
                complaints.push(Complaint { dealer, reason });
            }
        }
    }

    // Round 3: complaints.
    let accused = complaint_round(
        net,
        me,
        complaints,
        |dealer| def.is_dealer(dealer),
        "non-dealer",
        def.on_misbehaviour,
    )
    .await?;
    if !accused.is_empty() {
        tracing::warn!(
            disqualified = %accused.keys().cloned().collect::<Vec<_>>().join(", "),
            "dealers disqualified"
        );
    }
    let qualified: Vec<&String> = dealer_names
        .iter()
        .filter(|d| !accused.contains_key(*d))
        .collect();

    // Combine over the first t (old threshold) qualified dealers.
    let mut shares = Vec::new();
    let mut validators = Vec::with_capacity(v_count);
    let mut chosen_all = Vec::with_capacity(v_count);
    for (v, old_v) in old.validators().iter().enumerate() {
        let t_old = old_v.threshold as usize;
        if qualified.len() < t_old {
            return Err(Error::TooFewQualified {
                qualified: qualified.len(),
                disqualified: accused.keys().cloned().collect::<Vec<_>>().join(", "),
                threshold: old_v.threshold,
            });
        }
        let chosen = &qualified[..t_old];
        let mut cs: Vec<(ShareIndex, &Commitments)> = Vec::with_capacity(t_old);
        let mut values: Vec<(ShareIndex, &SecretKey)> = Vec::with_capacity(t_old);
        for d in chosen {
            let old_index = old_v
                .shares
                .iter()
                .find(|s| s.operator == **d)
                .map(|s| s.index)
                .ok_or_else(|| Error::UnknownOperator((*d).clone()))?;
            let (c, vals) = held
                .get(*d)
                .ok_or_else(|| Error::Definition(format!("internal: no dealing held from {d}")))?;
            cs.push((old_index, &c[v]));
            if my_new.is_some() {
                let value = vals.get(v).ok_or_else(|| {
                    Error::Definition(format!("internal: no value held from {d}"))
                })?;
                values.push((old_index, value));
            }
        }
        let commitments = interpolate_commitments(&cs)?;
        if commitments.group_public_key() != &old_v.group_pubkey {
            return Err(Error::GroupKeyChanged {
                validator: old_v.group_pubkey.bytes().to_string(),
                found: commitments.group_public_key().bytes().to_string(),
            });
        }
        if let Some(j) = my_new {
            let secret = interpolate_shares(&values)?;
            if !commitments.verify_share(j, secret.public_key()) {
                return Err(Error::Threshold(threshold::Error::IdentityShareKey(j)));
            }
            shares.push(KeyShare { index: j, secret });
        }
        let mut defs = Vec::with_capacity(def.operators.len());
        for op in &def.operators {
            let idx = def
                .new_index(&op.name)
                .ok_or_else(|| Error::UnknownOperator(op.name.clone()))?;
            defs.push(ShareDefinition {
                index: idx,
                pubkey: commitments.share_public_key(idx)?,
                operator: op.name.clone(),
            });
        }
        validators.push(ValidatorDefinition {
            group_pubkey: old_v.group_pubkey.clone(),
            threshold: t_new,
            share_count: u32::try_from(def.operators.len()).unwrap_or(u32::MAX),
            commitments,
            shares: defs,
        });
        chosen_all.push(chosen.iter().map(|d| (*d).clone()).collect::<Vec<_>>());
    }
    drop(held);
    let cluster = ClusterDefinition::new(def.cluster_operators(), validators)?;
    let cluster_hash = cluster.hash().to_string();
    tracing::info!(%cluster_hash, "new cluster.json computed");

    // Round 4: every new operator proves its new shares sign.
    let roots: Vec<SigningRoot> = (0..v_count).map(|v| check_root(&net.id, v)).collect();
    let my_partials: Vec<Signature> = shares
        .iter()
        .zip(&roots)
        .map(|(s, r)| s.secret.sign(r))
        .collect();
    net.publish(
        ROUND_CHECK,
        ReshareCheck {
            cluster_hash: cluster_hash.clone(),
            dealers: chosen_all.clone(),
            signatures: my_partials.iter().map(Signature::to_hex).collect(),
        },
    )?;
    let checks: BTreeMap<String, ReshareCheck> = net.collect(ROUND_CHECK).await?;
    for (op, c) in &checks {
        same_result(op, "cluster.json", &c.cluster_hash, &cluster_hash)?;
        let expected = if def.is_new_operator(op) { v_count } else { 0 };
        if c.signatures.len() != expected {
            return Err(malformed(
                op,
                ROUND_CHECK,
                format!("{} signatures, expected {expected}", c.signatures.len()),
            ));
        }
    }
    for (v, validator) in cluster.validators().iter().enumerate() {
        let mut collected: Vec<(ShareIndex, Signature)> = Vec::new();
        if let Some(j) = my_new {
            collected.push((j, my_partials[v].clone()));
        }
        for (op, c) in checks.iter().filter(|(op, _)| def.is_new_operator(op)) {
            let idx = def
                .new_index(op)
                .ok_or_else(|| Error::UnknownOperator(op.clone()))?;
            let share_pk = &validator
                .share(idx)
                .ok_or_else(|| Error::UnknownOperator(op.clone()))?
                .pubkey;
            let sig = Signature::from_hex(&c.signatures[v])
                .ok()
                .filter(|s| s.verify(share_pk, &roots[v].0))
                .ok_or_else(|| Error::BadCheckSignature {
                    operator: op.clone(),
                    validator: v,
                })?;
            collected.push((idx, sig));
        }
        let sig = threshold::combine(&collected, t_new as usize)?;
        if !sig.verify(&validator.group_pubkey, &roots[v].0) {
            return Err(Error::CheckSignature(v));
        }
    }
    tracing::info!("the new shares sign under every group key");

    // Round 5: confirm.
    net.publish(
        ROUND_CONFIRM,
        ReshareConfirmation {
            cluster_hash: cluster_hash.clone(),
        },
    )?;
    let confirms: BTreeMap<String, ReshareConfirmation> = net.collect(ROUND_CONFIRM).await?;
    for (op, c) in &confirms {
        same_result(op, "cluster.json", &c.cluster_hash, &cluster_hash)?;
    }
    tracing::info!(%cluster_hash, "every participant confirmed the same new cluster.json");
    Ok((cluster, shares, chosen_all))
}

/// The public check of a dealing: one commitment vector per validator, `t'` long, whose
/// constant term is the dealer's share public key in the old cluster. `Err` is the
/// complaint's reason.
fn check_public(
    old: &ClusterDefinition,
    dealer: &str,
    t_new: u32,
    commitments: &[Commitments],
) -> Result<(), String> {
    if commitments.len() != old.validators().len() {
        return Err(format!(
            "{} commitment vectors for {} validators",
            commitments.len(),
            old.validators().len()
        ));
    }
    for (v, (c, old_v)) in commitments.iter().zip(old.validators()).enumerate() {
        if c.threshold() != t_new {
            return Err(format!(
                "validator {v}: {} commitments, expected {t_new}",
                c.threshold()
            ));
        }
        let share = old_v
            .shares
            .iter()
            .find(|s| s.operator == dealer)
            .ok_or_else(|| format!("validator {v}: {dealer} holds no old share"))?;
        if c.group_public_key() != &share.pubkey {
            return Err(format!(
                "validator {v}: constant commitment {} is not {dealer}'s old share public key {}",
                c.group_public_key().bytes(),
                share.pubkey.bytes()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str) -> String {
        format!(
            r#"{{"name":"{name}","url":"https://{name}:1","node_url":"https://{name}:2","tls_fingerprint":"{}"}}"#,
            "00".repeat(32)
        )
    }

    fn sample() -> String {
        let ops: Vec<String> = ["a", "b", "e"].iter().map(|n| op(n)).collect();
        format!(
            r#"{{"version":1,"name":"x","old_cluster_hash":"0x{}",
            "dealers":[{{"name":"a"}},{{"name":"d","url":"https://d:1"}}],
            "operators":[{}],"threshold":2}}"#,
            "ab".repeat(32),
            ops.join(",")
        )
    }

    #[test]
    fn parses_checks_and_lists_endpoints() {
        let d = ReshareDefinition::from_json(&sample()).expect("valid");
        assert_eq!(d.on_misbehaviour, OnMisbehaviour::Abort);
        assert_eq!(d.new_index("e"), ShareIndex::new(3));
        assert_eq!(d.new_index("d"), None);
        assert!(d.is_dealer("d") && !d.is_new_operator("d"));
        let names: Vec<String> = d.endpoints().into_iter().map(|o| o.name).collect();
        assert_eq!(names, ["a", "b", "e", "d"]);
        assert_eq!(d.endpoints()[3].url, "https://d:1");
        assert_eq!(d.cluster_operators()[0].url, "https://a:2");
        let again = ReshareDefinition::from_json(&serde_json::to_string_pretty(&d).expect("ser"))
            .expect("round trip");
        assert_eq!(again.id(), d.id());
    }

    #[test]
    fn refuses_bad_definitions() {
        let s = sample();
        for (from, to) in [
            (r#""threshold":2"#, r#""threshold":1"#),
            (r#""threshold":2"#, r#""threshold":4"#),
            (r#""version":1"#, r#""version":2"#),
            (r#""version":1"#, r#""version":1,"extra":1"#),
            (r#"{"name":"d","url":"https://d:1"}"#, r#"{"name":"d"}"#),
            (r#""url":"https://d:1""#, r#""url":"http://d:1""#),
            (
                r#"{"name":"a"}"#,
                r#"{"name":"a","url":"https://elsewhere:1"}"#,
            ),
            (r#"{"name":"a"}"#, r#"{"name":"d","url":"https://d:1"}"#),
            (r#""old_cluster_hash":"0xab"#, r#""old_cluster_hash":"0xzz"#),
        ] {
            let text = s.replacen(from, to, 1);
            assert_ne!(text, s, "{from}");
            assert!(ReshareDefinition::from_json(&text).is_err(), "{to}");
        }
    }

    #[test]
    fn check_root_is_domain_separated() {
        assert_ne!(check_root("0x01", 0).0, check_root("0x01", 1).0);
        assert_ne!(check_root("0x01", 0).0, check_root("0x02", 0).0);
    }
}
