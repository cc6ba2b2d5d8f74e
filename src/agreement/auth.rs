//! Who signs agreement messages and how a member's signature is checked.
//!
//! A node signs its messages with the private key of its peer client identity
//! (`--peer-client-cert` / `--peer-client-key`: the certificate it presents to its peers), with
//! the TLS 1.3 signature scheme that key supports (Ed25519, ECDSA P-256/P-384, RSA-PSS). A
//! signature on the wire is the scheme's 2-byte code (big-endian) followed by the signature.
//!
//! Certificates travel with the messages: a batch carries the DER certificates of the senders
//! of the messages it holds, nested ones (proofs, justifications, commits) included, until the
//! peer has accepted a batch with them; a peer that meets a signer it holds no certificate of
//! (after a restart) refuses the batch with 428 and the sender sends it again with the
//! certificates (see `wire.rs`). The receiver keeps a certificate only if its SHA-256 fingerprint is one the cluster already
//! trusts for that operator (a line of `--peer-allowed-clients`, or the operator's
//! `tls_fingerprint` in `cluster.json`: the same fingerprints that authorise a peer on the
//! history route), so nothing new is configured. A member of an instance is the operator
//! holding the validator's share at that position when the shares are sorted by share index.
//!
//! Invariants: a signature verifies only against a certificate whose fingerprint is allowed for
//! the operator the member index names; this node's own certificate is trusted as its own; the
//! private key is never logged or printed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::pki_types::CertificateDer;
use rustls::SignatureScheme;

use super::types::{Authenticator, Members};
use crate::bls::PublicKeyBytes;
use crate::cluster::ClusterDefinition;
use crate::tls::Fingerprint;

/// Signature schemes a node may sign with (those TLS 1.3 allows), in order of preference.
const SCHEMES: [SignatureScheme; 6] = [
    SignatureScheme::ED25519,
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
];

/// Largest certificate accepted from a peer.
pub const MAX_CERT_BYTES: usize = 16 * 1024;

/// Failures building the signing identity or the roster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The certificate or key file could not be read.
    #[error(transparent)]
    Tls(#[from] crate::tls::Error),
    /// The key type cannot sign with a TLS 1.3 scheme.
    #[error("the peer client key cannot sign agreement messages: {0}")]
    UnsupportedKey(String),
    /// `--operator` is not in the cluster definition.
    #[error("operator {0:?} is not in the cluster definition")]
    UnknownOperator(String),
    /// An allowed peer client names no operator of the cluster.
    #[error("allowed peer client {0:?} is not an operator of the cluster definition")]
    UnknownPeerClient(String),
}

/// This node's signing identity: its peer client certificate and key.
pub struct NodeIdentity {
    cert: Vec<u8>,
    signer: Box<dyn rustls::sign::Signer>,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("certificate", &Fingerprint::of_der(&self.cert))
            .field("scheme", &self.signer.scheme())
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// Loads the certificate (the leaf, first in the file) and private key PEM files.
    ///
    /// # Errors
    /// Unreadable files, or a key that cannot sign with a TLS 1.3 scheme.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, Error> {
        let certs = crate::tls::load_certs(cert)?;
        let key = crate::tls::load_private_key(key)?;
        let leaf = certs
            .into_iter()
            .next()
            .ok_or_else(|| Error::UnsupportedKey("no certificate".into()))?;
        Self::from_der(leaf.as_ref().to_vec(), &key)
    }

    /// From a DER certificate and its private key.
    ///
    /// # Errors
    /// A key that cannot sign with a TLS 1.3 scheme.
    pub fn from_der(
        cert: Vec<u8>,
        key: &rustls::pki_types::PrivateKeyDer<'_>,
    ) -> Result<Self, Error> {
        let key = rustls::crypto::ring::sign::any_supported_type(key)
            .map_err(|e| Error::UnsupportedKey(e.to_string()))?;
        let signer = key
            .choose_scheme(&SCHEMES)
            .ok_or_else(|| Error::UnsupportedKey(format!("{:?}", key.algorithm())))?;
        let identity = Self { cert, signer };
        // The certificate must hold the public half of this key.
        let probe = identity.sign(b"dvsigner agreement key check");
        if !verify_with_cert(&identity.cert, b"dvsigner agreement key check", &probe) {
            return Err(Error::UnsupportedKey(
                "the key does not match the certificate".into(),
            ));
        }
        Ok(identity)
    }

    /// The certificate (DER).
    pub fn certificate(&self) -> &[u8] {
        &self.cert
    }

    /// Signature over `bytes`: scheme code (2 bytes, big-endian) then the signature.
    pub fn sign(&self, bytes: &[u8]) -> Vec<u8> {
        let code = u16::from(self.signer.scheme()).to_be_bytes();
        match self.signer.sign(bytes) {
            Ok(sig) => {
                let mut out = Vec::with_capacity(2 + sig.len());
                out.extend_from_slice(&code);
                out.extend_from_slice(&sig);
                out
            }
            // ring signing fails only on an internal error; an empty signature verifies nowhere.
            Err(e) => {
                tracing::error!(error = %e, "signing an agreement message failed");
                Vec::new()
            }
        }
    }
}

/// Whether `signature` (scheme code + signature) over `bytes` verifies under the public key of
/// the DER certificate `cert`.
pub fn verify_with_cert(cert: &[u8], bytes: &[u8], signature: &[u8]) -> bool {
    let Some((code, sig)) = signature.split_first_chunk::<2>() else {
        return false;
    };
    let scheme = SignatureScheme::from(u16::from_be_bytes(*code));
    if !SCHEMES.contains(&scheme) {
        return false;
    }
    let der = CertificateDer::from(cert);
    let Ok(cert) = webpki::EndEntityCert::try_from(&der) else {
        return false;
    };
    let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    algorithms
        .mapping
        .iter()
        .filter(|(s, _)| *s == scheme)
        .flat_map(|(_, algs)| algs.iter())
        .any(|alg| cert.verify_signature(*alg, bytes, sig).is_ok())
}

/// Signature checks remembered per generation (two generations are kept): about 1 MiB each.
pub const CHECKS_REMEMBERED: usize = 32 * 1024;

/// Digest of one signature check: operator, message bytes and signature.
type CheckKey = [u8; 32];

/// Signature checks that succeeded, so that a message met again is not checked again: a prepare
/// arrives on its own and then again inside round changes and proposals, a commit on its own and
/// inside decisions, and peers re-send what may have been lost. Bounded: when the current
/// generation is full it becomes the previous one and the oldest is forgotten.
///
/// Sound because the key ring's certificates only grow (learned certificates are never
/// dropped and the allowed fingerprints are fixed for its lifetime), so a signature that
/// verified for an operator once verifies for it for as long as the ring exists; the key is a
/// SHA-256 over everything the check depends on, with the lengths, so two different checks
/// never share it.
#[derive(Default)]
struct CheckedSignatures {
    current: std::collections::HashSet<CheckKey>,
    previous: std::collections::HashSet<CheckKey>,
}

impl CheckedSignatures {
    fn key(op: usize, bytes: &[u8], signature: &[u8]) -> CheckKey {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"dvsigner agreement signature check\0");
        h.update((op as u64).to_be_bytes());
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
        h.update((signature.len() as u64).to_be_bytes());
        h.update(signature);
        h.finalize().into()
    }

    fn contains(&self, key: &CheckKey) -> bool {
        self.current.contains(key) || self.previous.contains(key)
    }

    fn insert(&mut self, key: CheckKey, capacity: usize) {
        if self.current.len() >= capacity {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key);
    }
}

/// The operators' certificates this node knows, checked against the fingerprints the cluster
/// trusts, and this node's own identity.
pub struct KeyRing {
    operators: Vec<String>,
    me: usize,
    allowed: HashMap<Fingerprint, usize>,
    /// Per operator (cluster.json order): certificates learned, at most one per allowed
    /// fingerprint.
    certs: RwLock<Vec<Vec<Arc<[u8]>>>>,
    identity: NodeIdentity,
    checked: std::sync::Mutex<CheckedSignatures>,
    /// Most checks per generation of `checked`.
    remembered: usize,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("operators", &self.operators)
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// The key ring of operator `me` of `definition`: certificates are accepted for an
    /// operator when their fingerprint is in `allowed_clients` under its name or is its
    /// `tls_fingerprint` in the definition.
    ///
    /// # Errors
    /// [`Error::UnknownOperator`], [`Error::UnknownPeerClient`].
    pub fn new(
        definition: &ClusterDefinition,
        me: &str,
        allowed_clients: &BTreeMap<String, Fingerprint>,
        identity: NodeIdentity,
    ) -> Result<Self, Error> {
        let operators: Vec<String> = definition
            .operators()
            .iter()
            .map(|o| o.name.clone())
            .collect();
        let index = |name: &str| operators.iter().position(|o| o == name);
        let me_index = index(me).ok_or_else(|| Error::UnknownOperator(me.to_owned()))?;
        let allowed = definition
            .peer_fingerprints(allowed_clients)
            .map_err(Error::UnknownPeerClient)?
            .into_iter()
            .collect();
        let mut certs = vec![Vec::new(); operators.len()];
        certs[me_index].push(Arc::from(identity.certificate()));
        Ok(Self {
            operators,
            me: me_index,
            allowed,
            certs: RwLock::new(certs),
            identity,
            checked: std::sync::Mutex::new(CheckedSignatures::default()),
            remembered: CHECKS_REMEMBERED,
        })
    }

    /// Whether a successful check of this signature is remembered.
    #[cfg(test)]
    fn remembers(&self, op: usize, bytes: &[u8], signature: &[u8]) -> bool {
        self.checked
            .lock()
            .is_ok_and(|c| c.contains(&CheckedSignatures::key(op, bytes, signature)))
    }

    /// The same ring remembering at most `n` checks per generation (0: none).
    #[cfg(test)]
    #[must_use]
    fn remembering(mut self, n: usize) -> Self {
        self.remembered = n;
        self
    }

    /// This node's operator index (cluster.json order).
    pub fn me(&self) -> usize {
        self.me
    }

    /// Operator names in cluster.json order.
    pub fn operators(&self) -> &[String] {
        &self.operators
    }

    /// The operator index of a name.
    pub fn operator_index(&self, name: &str) -> Option<usize> {
        self.operators.iter().position(|o| o == name)
    }

    /// Signs `bytes` as this node.
    pub fn sign(&self, bytes: &[u8]) -> Vec<u8> {
        self.identity.sign(bytes)
    }

    /// Keeps the certificates whose fingerprint the cluster trusts for some operator; returns
    /// how many were refused (unknown fingerprint, too large).
    pub fn learn<'a>(&self, certificates: impl IntoIterator<Item = &'a [u8]>) -> usize {
        let mut refused = 0;
        for der in certificates {
            let fp = Fingerprint::of_der(der);
            let Some(&op) = self
                .allowed
                .get(&fp)
                .filter(|_| der.len() <= MAX_CERT_BYTES)
            else {
                refused += 1;
                continue;
            };
            if op == self.me {
                continue;
            }
            let Ok(mut certs) = self.certs.write() else {
                return refused;
            };
            let known = &mut certs[op];
            if !known.iter().any(|c| Fingerprint::of_der(c) == fp) {
                known.push(Arc::from(der));
            }
        }
        refused
    }

    /// Whether a certificate of operator `op` is known (this node's own always is).
    pub fn knows(&self, op: usize) -> bool {
        op == self.me
            || self
                .certs
                .read()
                .is_ok_and(|c| c.get(op).is_some_and(|k| !k.is_empty()))
    }

    /// The certificates known for these operators (for an outgoing batch).
    pub fn certificates(&self, operators: impl IntoIterator<Item = usize>) -> Vec<Arc<[u8]>> {
        let Ok(certs) = self.certs.read() else {
            return Vec::new();
        };
        let mut out: Vec<Arc<[u8]>> = Vec::new();
        for op in operators {
            for c in certs.get(op).into_iter().flatten() {
                if !out.iter().any(|o| Arc::ptr_eq(o, c)) {
                    out.push(c.clone());
                }
            }
        }
        out
    }

    /// Whether operator `op` signed `bytes` (under one of its known certificates). A check
    /// that succeeded before is answered from memory (counted in
    /// `dvsigner_agreement_signature_checks_total{result="remembered"}`).
    pub fn verify_operator(&self, op: usize, bytes: &[u8], signature: &[u8]) -> bool {
        let metrics = crate::metrics::global();
        let key = (self.remembered > 0).then(|| CheckedSignatures::key(op, bytes, signature));
        if let Some(key) = &key {
            if self.checked.lock().is_ok_and(|c| c.contains(key)) {
                metrics.record_agreement_signature_check("remembered");
                return true;
            }
        }
        let known: Vec<Arc<[u8]>> = match self.certs.read() {
            Ok(c) => c.get(op).cloned().unwrap_or_default(),
            Err(_) => return false,
        };
        let ok = known
            .iter()
            .any(|cert| verify_with_cert(cert, bytes, signature));
        metrics.record_agreement_signature_check(if ok { "verified" } else { "failed" });
        if let (true, Some(key)) = (ok, key) {
            if let Ok(mut c) = self.checked.lock() {
                c.insert(key, self.remembered);
            }
        }
        ok
    }
}

/// The members of one validator's instances: share holders in share-index order.
#[derive(Debug, Clone)]
pub struct ValidatorRoster {
    /// Operator index (cluster.json order) of each member.
    pub members: Arc<[usize]>,
    /// The validator's threshold (the quorum).
    pub threshold: usize,
    /// This node's member index, if it holds a share.
    pub me: Option<usize>,
    /// The validator's share key held by this node, if any.
    pub share: Option<PublicKeyBytes>,
}

/// Every validator's members, the cluster hash and the key ring.
pub struct Roster {
    domain: [u8; 32],
    ring: Arc<KeyRing>,
    by_group: HashMap<PublicKeyBytes, ValidatorRoster>,
    by_share: HashMap<PublicKeyBytes, PublicKeyBytes>,
    auth: RwLock<HashMap<PublicKeyBytes, Arc<dyn Authenticator>>>,
}

impl std::fmt::Debug for Roster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roster")
            .field("ring", &self.ring)
            .field("validators", &self.by_group.len())
            .finish_non_exhaustive()
    }
}

impl Roster {
    /// The roster of `definition` as seen by the owner of `ring`.
    pub fn new(definition: &ClusterDefinition, ring: Arc<KeyRing>) -> Self {
        let me = ring.operators()[ring.me()].clone();
        let mut by_group = HashMap::new();
        let mut by_share = HashMap::new();
        for v in definition.validators() {
            let mut shares: Vec<_> = v.shares.iter().collect();
            shares.sort_by_key(|s| s.index);
            let members: Arc<[usize]> = shares
                .iter()
                .filter_map(|s| ring.operator_index(&s.operator))
                .collect();
            let my_share = shares.iter().position(|s| s.operator == me);
            let share = my_share.map(|i| shares[i].pubkey.bytes());
            if let Some(s) = share {
                by_share.insert(s, v.group_pubkey.bytes());
            }
            by_group.insert(
                v.group_pubkey.bytes(),
                ValidatorRoster {
                    members,
                    threshold: v.threshold as usize,
                    me: my_share,
                    share,
                },
            );
        }
        Self {
            domain: definition.hash().0,
            ring,
            by_group,
            by_share,
            auth: RwLock::new(HashMap::new()),
        }
    }

    /// The key ring.
    pub fn ring(&self) -> &Arc<KeyRing> {
        &self.ring
    }

    /// The domain (cluster hash) every message is signed under.
    pub fn domain(&self) -> [u8; 32] {
        self.domain
    }

    /// The validator whose share this node signs with `share` (its group key).
    pub fn group_of_share(&self, share: &PublicKeyBytes) -> Option<PublicKeyBytes> {
        self.by_share.get(share).copied()
    }

    /// The roster of a validator.
    pub fn validator(&self, group: &PublicKeyBytes) -> Option<&ValidatorRoster> {
        self.by_group.get(group)
    }

    /// The engine's view of a validator's instances (None when this node holds no share).
    pub fn members(&self, group: &PublicKeyBytes) -> Option<Members> {
        let v = self.by_group.get(group)?;
        Some(Members {
            n: v.members.len(),
            quorum: v.threshold,
            me: v.me?,
            domain: self.domain,
        })
    }

    /// The authenticator of a validator's instances (one per validator, built on first use).
    pub fn authenticator(&self, group: &PublicKeyBytes) -> Option<Arc<dyn Authenticator>> {
        if let Some(a) = self.auth.read().ok()?.get(group) {
            return Some(a.clone());
        }
        let v = self.by_group.get(group)?;
        let auth: Arc<dyn Authenticator> = Arc::new(MemberAuth {
            ring: self.ring.clone(),
            members: v.members.clone(),
        });
        if let Ok(mut map) = self.auth.write() {
            map.entry(*group).or_insert_with(|| auth.clone());
        }
        Some(auth)
    }

    /// Operator index of member `member` of validator `group`.
    pub fn operator_of(&self, group: &PublicKeyBytes, member: usize) -> Option<usize> {
        self.by_group.get(group)?.members.get(member).copied()
    }
}

/// [`Authenticator`] of one validator's instances: member `i` is the operator holding its
/// `i`-th share (by share index).
struct MemberAuth {
    ring: Arc<KeyRing>,
    members: Arc<[usize]>,
}

impl Authenticator for MemberAuth {
    fn sign(&self, bytes: &[u8]) -> Vec<u8> {
        self.ring.sign(bytes)
    }

    fn verify(&self, member: usize, bytes: &[u8], signature: &[u8]) -> bool {
        match self.members.get(member) {
            Some(&op) => self.ring.verify_operator(op, bytes, signature),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pki(dir: &Path) -> crate::tls::DevPki {
        crate::tls::DevPki::generate(dir, &[], &["a-client", "b-client", "x-client"]).expect("pki")
    }

    fn identity(pki: &crate::tls::DevPki, name: &str) -> NodeIdentity {
        let id = pki.identity(name).expect("identity");
        NodeIdentity::load(&id.cert, &id.key).expect("load identity")
    }

    fn der(pki: &crate::tls::DevPki, name: &str) -> Vec<u8> {
        let id = pki.identity(name).expect("identity");
        crate::tls::load_certs(&id.cert).expect("cert")[0]
            .as_ref()
            .to_vec()
    }

    #[test]
    fn a_signature_verifies_with_the_signers_certificate_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let pki = pki(dir.path());
        let a = identity(&pki, "a-client");
        let sig = a.sign(b"prepare round 1");
        assert!(verify_with_cert(
            &der(&pki, "a-client"),
            b"prepare round 1",
            &sig
        ));
        // Another member's certificate: refused.
        assert!(!verify_with_cert(
            &der(&pki, "b-client"),
            b"prepare round 1",
            &sig
        ));
        // Tampered bytes or signature: refused.
        assert!(!verify_with_cert(
            &der(&pki, "a-client"),
            b"prepare round 2",
            &sig
        ));
        let mut bad = sig.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(!verify_with_cert(
            &der(&pki, "a-client"),
            b"prepare round 1",
            &bad
        ));
        // An unknown scheme code or a truncated signature: refused, no panic.
        let mut scheme = sig.clone();
        scheme[0] = 0xff;
        assert!(!verify_with_cert(
            &der(&pki, "a-client"),
            b"prepare round 1",
            &scheme
        ));
        assert!(!verify_with_cert(
            &der(&pki, "a-client"),
            b"prepare round 1",
            &sig[..1]
        ));
        assert!(!verify_with_cert(
            b"not a certificate",
            b"prepare round 1",
            &sig
        ));
    }

    #[test]
    fn a_key_that_does_not_match_its_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let pki = pki(dir.path());
        let b = pki.identity("b-client").expect("b");
        let key = crate::tls::load_private_key(&b.key).expect("key");
        let err = NodeIdentity::from_der(der(&pki, "a-client"), &key).expect_err("mismatch");
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    fn definition() -> ClusterDefinition {
        let ops: Vec<crate::cluster::Operator> = ["a", "b", "c"]
            .iter()
            .map(|n| crate::cluster::Operator::new(*n, format!("https://{n}:9000")))
            .collect();
        let keys = vec![crate::keys::interop::interop_secret_key(0)];
        crate::cluster::split_keys(&keys, 2, &ops).expect("split").0
    }

    /// Operators a and b allowed by their client certificates' fingerprints (c by none).
    fn allowed_a_b(pki: &crate::tls::DevPki) -> BTreeMap<String, Fingerprint> {
        [
            ("a", pki.identity("a-client").expect("a").fingerprint),
            ("b", pki.identity("b-client").expect("b").fingerprint),
        ]
        .into_iter()
        .map(|(n, f)| (n.to_owned(), f))
        .collect()
    }

    #[test]
    fn the_ring_keeps_only_certificates_the_cluster_trusts_and_members_map_to_operators() {
        let dir = tempfile::tempdir().expect("tmp");
        let pki = pki(&dir.path().join("tls"));
        let def = definition();
        let allowed = allowed_a_b(&pki);
        let ring_b = Arc::new(
            KeyRing::new(&def, "b", &allowed, identity(&pki, "b-client")).expect("ring b"),
        );
        let ring_a = Arc::new(
            KeyRing::new(&def, "a", &allowed, identity(&pki, "a-client")).expect("ring a"),
        );
        let roster_a = Roster::new(&def, ring_a.clone());
        let roster_b = Roster::new(&def, ring_b.clone());
        let group = def.validators()[0].group_pubkey.bytes();
        let member_a = roster_a.members(&group).expect("a is a member").me;
        let auth_a = roster_a.authenticator(&group).expect("auth");
        let auth_b = roster_b.authenticator(&group).expect("auth");
        let sig = auth_a.sign(b"commit");
        // b has not seen a's certificate yet.
        assert!(!auth_b.verify(member_a, b"commit", &sig));
        // x-client is no operator's: refused and not kept.
        assert_eq!(ring_b.learn([der(&pki, "x-client").as_slice()]), 1);
        assert!(!auth_b.verify(member_a, b"commit", &sig));
        assert_eq!(ring_b.learn([der(&pki, "a-client").as_slice()]), 0);
        assert!(auth_b.verify(member_a, b"commit", &sig));
        // Under another member's index, or tampered: refused.
        let other = (member_a + 1) % 3;
        assert!(!auth_b.verify(other, b"commit", &sig));
        assert!(!auth_b.verify(member_a, b"commit!", &sig));
        assert!(!auth_b.verify(7, b"commit", &sig));
        // Members are the share holders in share-index order.
        let v = &def.validators()[0];
        let mut shares: Vec<_> = v.shares.iter().collect();
        shares.sort_by_key(|s| s.index);
        for (i, s) in shares.iter().enumerate() {
            let op = roster_b.operator_of(&group, i).expect("member");
            assert_eq!(ring_b.operators()[op], s.operator);
        }
        assert_eq!(
            roster_a.group_of_share(&shares[member_a].pubkey.bytes()),
            Some(group)
        );
    }

    #[test]
    fn successful_checks_are_remembered_failed_ones_never_and_memory_is_bounded() {
        let dir = tempfile::tempdir().expect("tmp");
        let pki = pki(&dir.path().join("tls"));
        let def = definition();
        let allowed = allowed_a_b(&pki);
        let a = identity(&pki, "a-client");
        let ring = KeyRing::new(&def, "b", &allowed, identity(&pki, "b-client"))
            .expect("ring b")
            .remembering(3);
        let op_a = ring.operator_index("a").expect("a");
        let op_c = ring.operator_index("c").expect("c");
        let sig = a.sign(b"prepare 1");
        // Unknown certificate: refused, and the refusal is not remembered.
        assert!(!ring.verify_operator(op_a, b"prepare 1", &sig));
        assert!(!ring.remembers(op_a, b"prepare 1", &sig));
        ring.learn([der(&pki, "a-client").as_slice()]);
        assert!(ring.verify_operator(op_a, b"prepare 1", &sig));
        assert!(ring.remembers(op_a, b"prepare 1", &sig));
        // Met again: accepted from memory.
        assert!(ring.verify_operator(op_a, b"prepare 1", &sig));
        // The remembered check covers exactly that operator, message and signature.
        assert!(!ring.verify_operator(op_c, b"prepare 1", &sig));
        assert!(!ring.verify_operator(op_a, b"prepare 2", &sig));
        let mut bad = sig.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(!ring.verify_operator(op_a, b"prepare 1", &bad));
        assert!(!ring.remembers(op_a, b"prepare 1", &bad));
        // Bounded: generations of 3, two kept. "prepare 1" and the next two fill the first
        // generation; the fourth newer check starts the second; the sixth starts a third, and
        // the first generation is forgotten: checked again (and still verifies).
        let newer: Vec<(Vec<u8>, Vec<u8>)> = (0..6)
            .map(|i| {
                let m = format!("commit {i}").into_bytes();
                let s = a.sign(&m);
                (m, s)
            })
            .collect();
        for (i, (m, s)) in newer.iter().enumerate() {
            assert!(ring.verify_operator(op_a, m, s));
            assert_eq!(ring.remembers(op_a, b"prepare 1", &sig), i < 5, "after {i}");
        }
        assert!(ring.verify_operator(op_a, b"prepare 1", &sig));
        assert!(ring.remembers(op_a, b"prepare 1", &sig));
        // Remembering nothing: every check is made, none kept.
        let forgetful = KeyRing::new(&def, "b", &allowed, identity(&pki, "b-client"))
            .expect("ring b")
            .remembering(0);
        forgetful.learn([der(&pki, "a-client").as_slice()]);
        assert!(forgetful.verify_operator(op_a, b"prepare 1", &sig));
        assert!(!forgetful.remembers(op_a, b"prepare 1", &sig));
    }
}
