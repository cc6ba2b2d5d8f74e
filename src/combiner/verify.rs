//! The combiner's verification queue: combining `t` partials and verifying the result, for all
//! concurrent sign requests together.
//!
//! Requests put a [`CombineJob`] on one queue; each worker thread (one per core) takes every
//! job pending at that moment (up to [`MAX_BATCH`]), combines each, and verifies all combined
//! signatures with one random-linear-combination check ([`threshold::verify_batch`]: one
//! Miller loop per signature and one final exponentiation per batch instead of per
//! signature). No job waits for a batch to fill: a worker starts as soon as it is free, so
//! batches are large only when requests queue up anyway (under load), and a lone request is
//! verified on its own.
//!
//! When a batch check fails, every signature of the batch is verified on its own to find the
//! wrong ones; only those jobs are answered without a signature (the combiner then checks
//! their partials one by one). A job's answer carries a signature only after it verified,
//! alone or in a batch that verified. Each distinct signing root is hashed to G2 once (the
//! process keeps the latest roots hashed, [`crate::keys::hashed_roots`]: the requests of one
//! slot's validators share a few roots across batches), verified with one Miller loop per batch,
//! and the hashed root goes back to the request for its partial checks.
//!
//! Everything runs on the calling worker thread (blst's own thread pool is not used), so the
//! CPU the combiner spends is what its threads show.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::bls::{PublicKey, Signature, SigningRoot};
use crate::http::ApiError;
use crate::threshold::{self, BatchEntry, HashedMessage, ShareIndex};

/// Most jobs verified together (larger batches save little: the final exponentiation is
/// already a small share at this size).
pub const MAX_BATCH: usize = 64;

/// One request's combination: its chosen partials and what to verify the result against.
#[derive(Debug, Clone)]
pub struct CombineJob {
    /// Exactly the partials to combine (the first `threshold` are used).
    pub partials: Vec<(ShareIndex, Signature)>,
    /// Partials needed.
    pub threshold: usize,
    /// The group public key the result must verify under.
    pub group: PublicKey,
    /// The signing root.
    pub root: SigningRoot,
    /// The root hashed to G2, when the request already has it.
    pub hashed: Option<HashedMessage>,
}

/// A job's answer.
#[derive(Debug, Clone)]
pub struct CombineOutcome {
    /// The combined signature, verified; `None` when it did not verify (a wrong partial) or
    /// the partials could not be combined (repeated index).
    pub signature: Option<Signature>,
    /// The signing root hashed to G2 (for the request's partial checks).
    pub hashed: HashedMessage,
}

/// Counters of the verification queue (exported as metrics).
#[derive(Debug, Default)]
pub struct VerifyStats {
    /// Batches verified (a batch of one included).
    pub batches: AtomicU64,
    /// Combined signatures verified in them.
    pub signatures: AtomicU64,
    /// Batches whose joint check failed (each of their signatures was then checked alone).
    pub batch_failures: AtomicU64,
}

/// Combines and verifies `jobs` as one batch (see the module documentation); one outcome per
/// job, in order.
pub fn combine_and_verify(jobs: &[CombineJob], stats: &VerifyStats) -> Vec<CombineOutcome> {
    let mut hashed: HashMap<[u8; 32], HashedMessage> = HashMap::with_capacity(jobs.len());
    for j in jobs {
        if let Some(h) = j.hashed {
            hashed.entry(j.root.0).or_insert(h);
        }
    }
    for j in jobs {
        hashed
            .entry(j.root.0)
            .or_insert_with(|| crate::keys::hashed_roots::hashed(&j.root.0));
    }
    let hash_of = |j: &CombineJob| hashed[&j.root.0];
    let combined: Vec<Option<Signature>> = jobs
        .iter()
        .map(|j| threshold::combine(&j.partials, j.threshold).ok())
        .collect();
    let hashes: Vec<HashedMessage> = jobs.iter().map(hash_of).collect();
    let entries: Vec<BatchEntry<'_>> = jobs
        .iter()
        .zip(&combined)
        .zip(&hashes)
        .filter_map(|((j, sig), h)| {
            sig.as_ref().map(|signature| BatchEntry {
                signature,
                public_key: &j.group,
                message: h,
            })
        })
        .collect();
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .signatures
        .fetch_add(entries.len() as u64, Ordering::Relaxed);
    let all_ok = !entries.is_empty() && threshold::verify_batch(&entries);
    let single = entries.len() == 1;
    drop(entries);
    if !all_ok && !single {
        stats.batch_failures.fetch_add(1, Ordering::Relaxed);
    }
    jobs.iter()
        .zip(combined)
        .zip(hashes)
        .map(|((j, sig), h)| {
            let signature = sig.filter(|s| all_ok || threshold::verify_hashed(s, &j.group, &h));
            CombineOutcome {
                signature,
                hashed: h,
            }
        })
        .collect()
}

type Reply = tokio::sync::oneshot::Sender<CombineOutcome>;

/// The queue and its worker threads; the workers end when the queue is dropped.
pub struct VerifyQueue {
    tx: mpsc::Sender<(CombineJob, Reply)>,
    rx: Arc<Mutex<mpsc::Receiver<(CombineJob, Reply)>>>,
    /// Counters.
    pub stats: Arc<VerifyStats>,
}

impl std::fmt::Debug for VerifyQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyQueue").finish_non_exhaustive()
    }
}

impl VerifyQueue {
    /// Starts `workers` threads named `bls-verify-{i}`.
    ///
    /// # Errors
    /// When a thread cannot be created.
    pub fn start(workers: usize) -> std::io::Result<Self> {
        let queue = Self::idle();
        queue.spawn_workers(workers.max(1))?;
        Ok(queue)
    }

    /// A queue without workers yet: jobs wait until [`VerifyQueue::spawn_workers`].
    fn idle() -> Self {
        let (tx, rx) = mpsc::channel::<(CombineJob, Reply)>();
        Self {
            tx,
            rx: Arc::new(Mutex::new(rx)),
            stats: Arc::new(VerifyStats::default()),
        }
    }

    fn spawn_workers(&self, workers: usize) -> std::io::Result<()> {
        for i in 0..workers {
            let rx = Arc::clone(&self.rx);
            let stats = Arc::clone(&self.stats);
            std::thread::Builder::new()
                .name(format!("bls-verify-{i}"))
                .spawn(move || worker(&rx, &stats))?;
        }
        Ok(())
    }

    /// Queues `job` now and returns the future of its outcome.
    ///
    /// # Errors
    /// [`ApiError::Internal`] when the workers are gone.
    pub fn submit(
        &self,
        job: CombineJob,
    ) -> impl std::future::Future<Output = Result<CombineOutcome, ApiError>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let sent = self.tx.send((job, reply));
        async move {
            sent.map_err(|_| ApiError::Internal("verification queue closed".into()))?;
            rx.await
                .map_err(|_| ApiError::Internal("verification task dropped".into()))
        }
    }
}

fn worker(rx: &Mutex<mpsc::Receiver<(CombineJob, Reply)>>, stats: &VerifyStats) {
    loop {
        let batch: Vec<(CombineJob, Reply)> = {
            let Ok(rx) = rx.lock() else { return };
            let Ok(first) = rx.recv() else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            batch
        };
        // A request that gave up (its client went away) needs no work.
        let (jobs, replies): (Vec<CombineJob>, Vec<Reply>) =
            batch.into_iter().filter(|(_, r)| !r.is_closed()).unzip();
        if jobs.is_empty() {
            continue;
        }
        for (outcome, reply) in combine_and_verify(&jobs, stats).into_iter().zip(replies) {
            let _ = reply.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::secret::SecretKey;
    use crate::threshold::split;

    struct Validator {
        sk: SecretKey,
        group: PublicKey,
        shares: Vec<crate::threshold::KeyShare>,
    }

    fn validator() -> Validator {
        let sk = SecretKey::random();
        let (shares, commitments) = split(&sk, 3, 4).expect("split");
        Validator {
            group: commitments.group_public_key().clone(),
            sk,
            shares,
        }
    }

    fn job(v: &Validator, root: SigningRoot, wrong_share: Option<usize>) -> CombineJob {
        let partials = v
            .shares
            .iter()
            .take(3)
            .enumerate()
            .map(|(i, s)| {
                let signed = if Some(i) == wrong_share {
                    SigningRoot([0xee; 32])
                } else {
                    root
                };
                (s.index, s.secret.sign(&signed))
            })
            .collect();
        CombineJob {
            partials,
            threshold: 3,
            group: v.group.clone(),
            root,
            hashed: None,
        }
    }

    #[test]
    fn a_bad_partial_inside_a_batch_is_found_and_only_its_request_goes_without() {
        let validators: Vec<Validator> = (0..5).map(|_| validator()).collect();
        let roots: Vec<SigningRoot> = (0..5u8).map(|i| SigningRoot([i + 1; 32])).collect();
        // Request 2's second partial signs another root: its combination is wrong.
        let jobs: Vec<CombineJob> = validators
            .iter()
            .zip(&roots)
            .enumerate()
            .map(|(i, (v, r))| job(v, *r, (i == 2).then_some(1)))
            .collect();
        let stats = VerifyStats::default();
        let out = combine_and_verify(&jobs, &stats);
        assert_eq!(out.len(), 5);
        for (i, (o, (v, r))) in out.iter().zip(validators.iter().zip(&roots)).enumerate() {
            if i == 2 {
                assert!(
                    o.signature.is_none(),
                    "the wrong combination is not answered"
                );
            } else {
                let sig = o.signature.as_ref().expect("good requests are answered");
                assert_eq!(sig, &v.sk.sign(r), "request {i}");
                assert!(sig.verify(&v.group, &r.0));
            }
        }
        assert_eq!(stats.batches.load(Ordering::Relaxed), 1);
        assert_eq!(stats.signatures.load(Ordering::Relaxed), 5);
        assert_eq!(stats.batch_failures.load(Ordering::Relaxed), 1);

        // The same requests without the bad partial verify as one batch.
        let good: Vec<CombineJob> = validators
            .iter()
            .zip(&roots)
            .map(|(v, r)| job(v, *r, None))
            .collect();
        let stats = VerifyStats::default();
        assert!(combine_and_verify(&good, &stats)
            .iter()
            .all(|o| o.signature.is_some()));
        assert_eq!(stats.batch_failures.load(Ordering::Relaxed), 0);
    }

    /// Many keys over one root (one slot's attesters) share the root's Miller loop: a batch of
    /// them verifies, and fails when one signature is wrong, when two keys' signatures are
    /// swapped (their sum is still right) or when one key's signature is over another root;
    /// mixed with entries of other roots too.
    #[test]
    fn entries_sharing_a_root_are_checked_together_and_still_each_one() {
        let validators: Vec<Validator> = (0..6).map(|_| validator()).collect();
        let (shared, other) = (SigningRoot([9; 32]), SigningRoot([10; 32]));
        let (hs, ho) = (
            threshold::hash_to_g2(&shared.0),
            threshold::hash_to_g2(&other.0),
        );
        let sigs: Vec<Signature> = validators.iter().map(|v| v.sk.sign(&shared)).collect();
        let last_other = validators[5].sk.sign(&other);
        let batch = |sigs: &[&Signature], last_root_other: bool| {
            let entries: Vec<BatchEntry<'_>> = validators
                .iter()
                .zip(sigs)
                .enumerate()
                .map(|(i, (v, s))| BatchEntry {
                    signature: s,
                    public_key: &v.group,
                    message: if i == 5 && last_root_other { &ho } else { &hs },
                })
                .collect();
            threshold::verify_batch(&entries)
        };
        let honest: Vec<&Signature> = sigs.iter().collect();
        assert!(batch(&honest, false), "six keys, one root");
        let mut mixed = honest.clone();
        mixed[5] = &last_other;
        assert!(batch(&mixed, true), "five on one root, one on another");
        let mut swapped = honest.clone();
        swapped.swap(1, 3);
        assert!(!batch(&swapped, false), "two keys' signatures swapped");
        let mut wrong_root = honest.clone();
        wrong_root[2] = &last_other;
        assert!(!batch(&wrong_root, false), "a signature over another root");
        let foreign = validators[0].sk.sign(&shared);
        let mut foreign_key = honest.clone();
        foreign_key[4] = &foreign;
        assert!(!batch(&foreign_key, false), "another key's signature");
        assert!(
            !batch(&honest, true),
            "the last entry claims the other root"
        );
    }

    #[test]
    fn swapped_signatures_fail_the_batch_though_their_sum_is_right() {
        // Two valid signatures of one key over two roots, each presented with the other's
        // root: the plain sum of the pairs checks out, only the random scalars catch it.
        let v = validator();
        let (r1, r2) = (SigningRoot([1; 32]), SigningRoot([2; 32]));
        let (s1, s2) = (v.sk.sign(&r1), v.sk.sign(&r2));
        let (h1, h2) = (threshold::hash_to_g2(&r1.0), threshold::hash_to_g2(&r2.0));
        let honest = [
            BatchEntry {
                signature: &s1,
                public_key: &v.group,
                message: &h1,
            },
            BatchEntry {
                signature: &s2,
                public_key: &v.group,
                message: &h2,
            },
        ];
        assert!(threshold::verify_batch(&honest));
        let swapped = [
            BatchEntry {
                signature: &s2,
                public_key: &v.group,
                message: &h1,
            },
            BatchEntry {
                signature: &s1,
                public_key: &v.group,
                message: &h2,
            },
        ];
        assert!(!threshold::verify_batch(&swapped));
        assert!(!threshold::verify_hashed(&s2, &v.group, &h1));
        assert!(threshold::verify_hashed(&s1, &v.group, &h1));
    }

    #[test]
    fn a_signature_outside_g2_fails_alone_and_in_a_batch() {
        let v = validator();
        let root = SigningRoot([3; 32]);
        let good = v.sk.sign(&root);
        let mut bytes = good.to_bytes();
        let outside = (0..=255u8)
            .find_map(|b| {
                bytes[95] = b;
                let hex = format!("0x{}", hex::encode(bytes));
                Signature::from_hex_without_subgroup_check(&hex)
                    .ok()
                    .filter(|s| *s != good)
            })
            .expect("about half of all x coordinates are on the curve");
        assert!(!threshold::signature_in_g2(&outside));
        let h = threshold::hash_to_g2(&root.0);
        assert!(!threshold::verify_hashed(&outside, &v.group, &h));
        let entries = [
            BatchEntry {
                signature: &good,
                public_key: &v.group,
                message: &h,
            },
            BatchEntry {
                signature: &outside,
                public_key: &v.group,
                message: &h,
            },
        ];
        assert!(!threshold::verify_batch(&entries));
    }

    #[tokio::test]
    async fn concurrent_requests_share_batches_and_each_gets_its_own_answer() {
        // All 8 jobs are pending before the workers start: the first worker takes them as one
        // batch.
        let queue = VerifyQueue::idle();
        let validators: Vec<Validator> = (0..8).map(|_| validator()).collect();
        let mut pending = Vec::new();
        for (i, v) in validators.iter().enumerate() {
            let root = SigningRoot([i as u8 + 10; 32]);
            let bad = (i == 5).then_some(0);
            pending.push((i, root, queue.submit(job(v, root, bad))));
        }
        queue.spawn_workers(2).expect("workers");
        for (i, root, fut) in pending {
            let out = fut.await.expect("outcome");
            assert_eq!(out.signature.is_none(), i == 5, "request {i}");
            if let Some(sig) = out.signature {
                assert_eq!(sig, validators[i].sk.sign(&root));
            }
        }
        assert_eq!(queue.stats.batches.load(Ordering::Relaxed), 1);
        assert_eq!(queue.stats.signatures.load(Ordering::Relaxed), 8);
        assert_eq!(queue.stats.batch_failures.load(Ordering::Relaxed), 1);
    }
}
