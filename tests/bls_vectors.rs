//! ethereum/bls12-381-tests v0.1.2 (+ master's extra deserialization cases), every file one
//! named trial, run through dvsigner's BLS wrapper (`dvsigner::bls`, `keys::secret::SecretKey`).
//! Sign, verify and (de)serialization go through the wrapper; aggregation, batch verification
//! and hash-to-curve with a custom DST use blst directly, because the wrapper has no such API.
//!
//! Vectors: `tests/vectors/bls/` (see its README for the format and the infinity rules).

use std::path::{Path, PathBuf};

use blst::min_pk;
use blst::BLST_ERROR;
use dvsigner::bls::{BlstReason, Error as BlsError, PublicKey, Signature, DST};
use dvsigner::keys::secret::SecretKey;
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

/// The RFC 9380 suite DST the hash_to_G2 vectors use.
const HASH_TO_G2_DST: &[u8] = b"QUUX-V01-CS02-with-BLS12381G2_XMD:SHA-256_SSWU_RO_";

fn bytes(v: &Value) -> Result<Vec<u8>, Failed> {
    let s = v.as_str().ok_or("expected a hex string")?;
    let s = s.strip_prefix("0x").unwrap_or(s);
    hex::decode(s).map_err(|e| format!("bad hex in vector: {e}").into())
}

fn list(v: &Value) -> Result<Vec<Vec<u8>>, Failed> {
    v.as_array()
        .ok_or("expected a list")?
        .iter()
        .map(bytes)
        .collect()
}

fn expect_bool(v: &Value) -> Result<bool, Failed> {
    v.as_bool().ok_or_else(|| "expected a bool output".into())
}

fn check(got: bool, want: bool) -> Result<(), Failed> {
    if got == want {
        Ok(())
    } else {
        Err(format!("got {got}, expected {want}").into())
    }
}

/// Public keys through the wrapper (IETF KeyValidate: the identity is refused), as blst points.
fn public_keys(raw: &[Vec<u8>]) -> Option<Vec<min_pk::PublicKey>> {
    raw.iter()
        .map(|b| {
            let pk = PublicKey::from_bytes(b).ok()?;
            min_pk::PublicKey::from_bytes(&pk.bytes().0).ok()
        })
        .collect()
}

/// A signature through the wrapper (subgroup-checked), as a blst point.
fn signature(raw: &[u8]) -> Option<min_pk::Signature> {
    let s = Signature::from_bytes(raw).ok()?;
    min_pk::Signature::from_bytes(&s.to_bytes()).ok()
}

fn run_sign(input: &Value, output: &Value) -> Result<(), Failed> {
    let sk_bytes: [u8; 32] = bytes(&input["privkey"])?
        .try_into()
        .map_err(|_| "privkey length")?;
    let msg = bytes(&input["message"])?;
    match (SecretKey::from_bytes(&sk_bytes), output) {
        (Err(_), Value::Null) => Ok(()),
        (Ok(_), Value::Null) => Err("secret key accepted where signing must fail".into()),
        (Err(e), _) => Err(format!("secret key refused: {e}").into()),
        (Ok(sk), want) => {
            let sig = sk.sign_message(&msg);
            check(sig.to_bytes().to_vec() == bytes(want)?, true)?;
            // And the signature verifies under the key's public key.
            check(sig.verify(sk.public_key(), &msg), true)
        }
    }
}

fn run_verify(input: &Value, output: &Value) -> Result<(), Failed> {
    let pk = PublicKey::from_bytes(&bytes(&input["pubkey"])?);
    let sig = Signature::from_bytes(&bytes(&input["signature"])?);
    let msg = bytes(&input["message"])?;
    let got = match (pk, sig) {
        (Ok(pk), Ok(sig)) => sig.verify(&pk, &msg),
        _ => false,
    };
    check(got, expect_bool(output)?)
}

fn run_aggregate(input: &Value, output: &Value) -> Result<(), Failed> {
    let sigs = list(input)?
        .iter()
        .map(|s| signature(s))
        .collect::<Option<Vec<_>>>()
        .ok_or("invalid signature")?;
    let refs: Vec<&min_pk::Signature> = sigs.iter().collect();
    match (min_pk::AggregateSignature::aggregate(&refs, false), output) {
        (Err(_), Value::Null) => Ok(()),
        (Ok(_), Value::Null) => Err("aggregation of nothing succeeded".into()),
        (Err(e), _) => Err(format!("aggregation failed: {e:?}").into()),
        (Ok(agg), want) => {
            let got =
                Signature::from_bytes(&agg.to_signature().compress()).map_err(|e| e.to_string())?;
            check(got.to_bytes().to_vec() == bytes(want)?, true)
        }
    }
}

fn run_aggregate_verify(input: &Value, output: &Value) -> Result<(), Failed> {
    let raw_pks = list(&input["pubkeys"])?;
    let msgs = list(&input["messages"])?;
    let got = match (
        public_keys(&raw_pks),
        signature(&bytes(&input["signature"])?),
    ) {
        (Some(pks), Some(sig)) if !pks.is_empty() && pks.len() == msgs.len() => {
            let pk_refs: Vec<&min_pk::PublicKey> = pks.iter().collect();
            let msg_refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
            sig.aggregate_verify(true, &msg_refs, DST, &pk_refs, false) == BLST_ERROR::BLST_SUCCESS
        }
        _ => false,
    };
    check(got, expect_bool(output)?)
}

fn run_fast_aggregate_verify(input: &Value, output: &Value) -> Result<(), Failed> {
    let raw_pks = list(&input["pubkeys"])?;
    let msg = bytes(&input["message"])?;
    let got = match (
        public_keys(&raw_pks),
        signature(&bytes(&input["signature"])?),
    ) {
        (Some(pks), Some(sig)) if !pks.is_empty() => {
            let pk_refs: Vec<&min_pk::PublicKey> = pks.iter().collect();
            sig.fast_aggregate_verify(true, &msg, DST, &pk_refs) == BLST_ERROR::BLST_SUCCESS
        }
        _ => false,
    };
    check(got, expect_bool(output)?)
}

fn run_batch_verify(input: &Value, output: &Value) -> Result<(), Failed> {
    use rand::RngCore;
    let raw_pks = list(&input["pubkeys"])?;
    let msgs = list(&input["messages"])?;
    let raw_sigs = list(&input["signatures"])?;
    let sigs: Option<Vec<min_pk::Signature>> = raw_sigs.iter().map(|s| signature(s)).collect();
    let got = match (public_keys(&raw_pks), sigs) {
        (Some(pks), Some(sigs))
            if !pks.is_empty() && pks.len() == msgs.len() && pks.len() == sigs.len() =>
        {
            // Random 64-bit weights defeat forged sets that cancel out in an unweighted sum.
            let rands: Vec<blst::blst_scalar> = (0..pks.len())
                .map(|_| {
                    let mut b = [0u8; 32];
                    rand::rngs::OsRng.fill_bytes(&mut b[..8]);
                    b[0] |= 1;
                    blst::blst_scalar { b }
                })
                .collect();
            let pk_refs: Vec<&min_pk::PublicKey> = pks.iter().collect();
            let sig_refs: Vec<&min_pk::Signature> = sigs.iter().collect();
            let msg_refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
            min_pk::Signature::verify_multiple_aggregate_signatures(
                &msg_refs, DST, &pk_refs, false, &sig_refs, true, &rands, 64,
            ) == BLST_ERROR::BLST_SUCCESS
        }
        _ => false,
    };
    check(got, expect_bool(output)?)
}

/// G1: the infinity encoding is a valid *encoding* but not a valid public key; the wrapper
/// reports exactly that as [`BlstReason::Identity`], which counts as "decodes" here.
fn run_deserialization_g1(input: &Value, output: &Value) -> Result<(), Failed> {
    let raw = bytes(&input["pubkey"])?;
    let got = match PublicKey::from_bytes(&raw) {
        Ok(pk) => pk.bytes().0.to_vec() == raw,
        Err(BlsError::Point {
            reason: BlstReason::Identity,
            ..
        }) => {
            let mut inf = [0u8; 48];
            inf[0] = 0xc0;
            raw == inf
        }
        Err(_) => false,
    };
    check(got, expect_bool(output)?)
}

fn run_deserialization_g2(input: &Value, output: &Value) -> Result<(), Failed> {
    let raw = bytes(&input["signature"])?;
    let got = match Signature::from_bytes(&raw) {
        Ok(sig) => sig.to_bytes().to_vec() == raw,
        Err(_) => false,
    };
    check(got, expect_bool(output)?)
}

/// hash_to_G2 with the vectors' DST: signing with the scalar 1 yields H(msg) itself.
fn run_hash_to_g2(input: &Value, output: &Value) -> Result<(), Failed> {
    let msg = input["msg"].as_str().ok_or("msg")?.as_bytes();
    let mut one = [0u8; 32];
    one[31] = 1;
    let sk = min_pk::SecretKey::from_bytes(&one).map_err(|e| format!("{e:?}"))?;
    let point = sk.sign(msg, HASH_TO_G2_DST, &[]).serialize();
    // Uncompressed G2: x.c1 || x.c0 || y.c1 || y.c0, 48 bytes each, big-endian.
    let coord = |v: &Value| -> Result<Vec<u8>, Failed> {
        let s = v.as_str().ok_or("coordinate")?;
        let (c0, c1) = s.split_once(',').ok_or("coordinate pair")?;
        let mut out = bytes(&Value::from(c1))?;
        out.extend(bytes(&Value::from(c0))?);
        Ok(out)
    };
    let mut want = coord(&output["x"])?;
    want.extend(coord(&output["y"])?);
    check(point.to_vec() == want, true)
}

type Runner = fn(&Value, &Value) -> Result<(), Failed>;

fn runner(handler: &str) -> Option<Runner> {
    Some(match handler {
        "sign" => run_sign,
        "verify" => run_verify,
        "aggregate" => run_aggregate,
        "aggregate_verify" => run_aggregate_verify,
        "fast_aggregate_verify" => run_fast_aggregate_verify,
        "batch_verify" => run_batch_verify,
        "deserialization_G1" => run_deserialization_g1,
        "deserialization_G2" => run_deserialization_g2,
        "hash_to_G2" => run_hash_to_g2,
        _ => return None,
    })
}

fn trial(handler_dir: &Path, file: PathBuf, prefix: &str) -> Trial {
    let handler = handler_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned();
    let stem = file
        .file_stem()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned();
    Trial::test(format!("{prefix}{handler}::{stem}"), move || {
        let run = runner(&handler).ok_or_else(|| format!("no runner for handler {handler}"))?;
        let v: Value = serde_json::from_slice(&std::fs::read(&file)?)?;
        run(&v["input"], &v["output"])
    })
}

fn trials() -> Vec<Trial> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/bls");
    let mut out = Vec::new();
    for (dir, prefix) in [
        (root.clone(), ""),
        (root.join("supplementary-master"), "supplementary::"),
    ] {
        let mut handlers: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("vector dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.is_dir() && !p.ends_with("supplementary-master"))
            .collect();
        handlers.sort();
        for h in handlers {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&h)
                .expect("handler dir")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            files.sort();
            out.extend(files.into_iter().map(|f| trial(&h, f, prefix)));
        }
    }
    // 98 release files + 6 from master: a missing directory must not pass silently.
    assert_eq!(out.len(), 104, "vector files found");
    out
}

fn main() {
    libtest_mimic::run(&Arguments::from_args(), trials()).exit();
}
