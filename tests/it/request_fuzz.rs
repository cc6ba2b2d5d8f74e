//! Property tests of the sign-request parser: arbitrary bytes and mutated valid requests never
//! panic, and every malformed class gets its Web3Signer status class, never `Ok`.
//!
//! Valid seeds: the 11 Web3Signer vector bodies (minimal preset) and the 28 oracle bodies
//! (mainnet).

use std::path::PathBuf;
use std::sync::OnceLock;

use dvsigner::signing::{prepare, Error, Network};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};

struct Seed {
    body: Value,
    network: &'static Network,
}

fn seeds() -> &'static [Seed] {
    static SEEDS: OnceLock<Vec<Seed>> = OnceLock::new();
    static MINIMAL: OnceLock<Network> = OnceLock::new();
    static MAINNET: OnceLock<Network> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let minimal = MINIMAL.get_or_init(Network::minimal_test);
        let mainnet = MAINNET.get_or_init(|| Network::built_in("mainnet").expect("mainnet"));
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let read = |p: &str| -> Value {
            serde_json::from_slice(&std::fs::read(dir.join(p)).expect("read")).expect("json")
        };
        let mut out = Vec::new();
        let vectors = read("tests/vectors/signing-roots/web3signer_sign_types_minimal.json");
        for c in vectors["cases"].as_array().expect("cases") {
            out.push(Seed {
                body: c["web3signer_request"].clone(),
                network: minimal,
            });
        }
        let oracle = read("tests/oracle/fixtures.json");
        for c in oracle["cases"].as_array().expect("cases") {
            out.push(Seed {
                body: c["request"].clone(),
                network: mainnet,
            });
        }
        assert_eq!(out.len(), 39);
        for s in &out {
            assert!(
                run(&s.body, s.network).is_ok(),
                "seed must be valid: {}",
                s.body["type"]
            );
        }
        out
    })
}

fn run(body: &Value, network: &Network) -> Result<dvsigner::signing::PreparedSign, Error> {
    prepare(&serde_json::to_vec(body).expect("encode"), network)
}

#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Idx(usize),
}

/// Every leaf (non-container value) with its path.
fn leaves(v: &Value, path: &mut Vec<Seg>, out: &mut Vec<(Vec<Seg>, Value)>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                path.push(Seg::Key(k.clone()));
                leaves(x, path, out);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(Seg::Idx(i));
                leaves(x, path, out);
                path.pop();
            }
        }
        leaf => out.push((path.clone(), leaf.clone())),
    }
}

/// Every object key below the top level, with its path.
fn nested_keys(v: &Value, path: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                path.push(Seg::Key(k.clone()));
                if path.len() >= 2 {
                    out.push(path.clone());
                }
                nested_keys(x, path, out);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(Seg::Idx(i));
                nested_keys(x, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn get_mut<'a>(v: &'a mut Value, path: &[Seg]) -> &'a mut Value {
    path.iter().fold(v, |v, s| match s {
        Seg::Key(k) => &mut v[k.as_str()],
        Seg::Idx(i) => &mut v[*i],
    })
}

fn last_key(path: &[Seg]) -> &str {
    match path.last() {
        Some(Seg::Key(k)) => k,
        _ => "",
    }
}

fn is_decimal(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
}

fn fixed_hex_len(v: &Value) -> Option<usize> {
    let s = v.as_str()?.strip_prefix("0x")?;
    [4, 20, 32, 48, 96]
        .contains(&(s.len() / 2))
        .then_some(s.len() / 2)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_and_non_objects_are_malformed(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let net = Network::minimal_test();
        let r = prepare(&bytes, &net);
        if !matches!(serde_json::from_slice::<Value>(&bytes), Ok(Value::Object(_))) {
            prop_assert!(matches!(r, Err(Error::Malformed(_))), "{:?}", r);
        }
    }

    #[test]
    fn arbitrary_json_objects_with_a_known_type_never_panic(
        seed in any::<Index>(),
        junk in prop::collection::btree_map("[a-z_]{1,24}", prop_oneof![
            Just(Value::Null), any::<u64>().prop_map(Value::from), any::<i64>().prop_map(Value::from),
            "[0-9a-fx]{0,70}".prop_map(Value::from), Just(json!({})), Just(json!([]))], 0..6),
    ) {
        let seeds = seeds();
        let s = &seeds[seed.index(seeds.len())];
        let mut body = json!({"type": s.body["type"].clone()});
        for (k, v) in junk { body[k] = v; }
        let _ = run(&body, s.network);
    }

    #[test]
    fn truncated_requests_are_malformed(seed in any::<Index>(), cut in any::<Index>()) {
        let seeds = seeds();
        let s = &seeds[seed.index(seeds.len())];
        let raw = serde_json::to_vec(&s.body).expect("encode");
        let r = prepare(&raw[..cut.index(raw.len())], s.network);
        prop_assert!(matches!(r, Err(Error::Malformed(_))), "{:?}", r);
    }

    #[test]
    fn byte_flips_never_panic(seed in any::<Index>(), flips in prop::collection::vec((any::<Index>(), any::<u8>()), 1..8)) {
        let seeds = seeds();
        let s = &seeds[seed.index(seeds.len())];
        let mut raw = serde_json::to_vec(&s.body).expect("encode");
        for (at, b) in flips { let i = at.index(raw.len()); raw[i] = b; }
        let _ = prepare(&raw, s.network);
    }

    #[test]
    fn bad_integers_are_malformed(
        seed in any::<Index>(), leaf in any::<Index>(),
        bad in prop_oneof![
            Just(json!("-1")), Just(json!("18446744073709551616")), Just(json!("")), Just(json!("0x10")),
            Just(json!(" 1")), Just(json!(-5)), Just(json!(1.25)), Just(json!(true)), Just(json!([])), Just(json!({})),
            "[0-9]{0,3}[a-z ][0-9]{0,3}".prop_map(Value::from)],
    ) {
        let seeds = seeds();
        let s = &seeds[seed.index(seeds.len())];
        let mut all = Vec::new();
        leaves(&s.body, &mut Vec::new(), &mut all);
        let ints: Vec<_> = all.into_iter().filter(|(_, v)| is_decimal(v)).collect();
        prop_assume!(!ints.is_empty());
        let (path, _) = &ints[leaf.index(ints.len())];
        let mut body = s.body.clone();
        *get_mut(&mut body, path) = bad;
        let r = run(&body, s.network);
        prop_assert!(matches!(r, Err(Error::Malformed(_))), "{:?} at {:?}", r, path);
    }

    #[test]
    fn wrong_length_or_non_hex_bytes_are_malformed(
        seed in any::<Index>(), leaf in any::<Index>(), delta in 1usize..40, longer in any::<bool>(), nonhex in any::<bool>(),
    ) {
        let seeds = seeds();
        let s = &seeds[seed.index(seeds.len())];
        let mut all = Vec::new();
        leaves(&s.body, &mut Vec::new(), &mut all);
        // Fixed-size byte fields only (bitlists legitimately vary in length).
        let fixed: Vec<_> = all
            .into_iter()
            .filter(|(p, v)| last_key(p) != "aggregation_bits" && fixed_hex_len(v).is_some())
            .collect();
        prop_assume!(!fixed.is_empty());
        let (path, v) = &fixed[leaf.index(fixed.len())];
        let n = fixed_hex_len(v).expect("fixed");
        let replacement = if nonhex {
            format!("0x{}zz", "00".repeat(n - 1))
        } else {
            let m = if longer { n + delta } else { n.saturating_sub(delta) };
            format!("0x{}", "ab".repeat(m))
        };
        let mut body = s.body.clone();
        *get_mut(&mut body, path) = Value::from(replacement);
        let r = run(&body, s.network);
        prop_assert!(matches!(r, Err(Error::Malformed(_))), "{:?} at {:?}", r, path);
    }

    #[test]
    fn removing_a_nested_field_is_malformed(seed in any::<Index>(), key in any::<Index>()) {
        let seeds = seeds();
        let s = &seeds[seed.index(seeds.len())];
        let mut keys = Vec::new();
        nested_keys(&s.body, &mut Vec::new(), &mut keys);
        // committee_bits is what tells a v1 Electra aggregate from a phase0 one; not required.
        keys.retain(|p| last_key(p) != "committee_bits");
        prop_assume!(!keys.is_empty());
        let path = &keys[key.index(keys.len())];
        let mut body = s.body.clone();
        let (parent, last) = path.split_at(path.len() - 1);
        let Seg::Key(k) = &last[0] else { unreachable!("keys end in a key") };
        get_mut(&mut body, parent).as_object_mut().expect("object").remove(k);
        let r = run(&body, s.network);
        prop_assert!(matches!(r, Err(Error::Malformed(_))), "{:?} without {:?}", r, path);
    }

    #[test]
    fn removing_the_payload_or_needed_fork_info_is_a_root_error(seed in any::<Index>(), which in any::<bool>()) {
        let seeds = seeds();
        let s = &seeds[seed.index(seeds.len())];
        let kind = s.body["type"].as_str().expect("type");
        let needs_fork_info = !matches!(kind, "DEPOSIT" | "VALIDATOR_REGISTRATION");
        let mut body = s.body.clone();
        let obj = body.as_object_mut().expect("object");
        if which && needs_fork_info {
            obj.remove("fork_info");
        } else {
            let payload = obj
                .keys()
                .find(|k| !["type", "fork_info", "signingRoot"].contains(&k.as_str()))
                .expect("payload")
                .clone();
            obj.remove(&payload);
        }
        let r = run(&body, s.network);
        prop_assert!(matches!(r, Err(Error::Root(_))), "{:?}", r);
    }

    #[test]
    fn unknown_types_are_malformed(seed in any::<Index>(), t in "[A-Z_]{1,40}") {
        prop_assume!(dvsigner::signing::SignKind::ALL.iter().all(|k| !k.as_str().eq_ignore_ascii_case(&t)));
        let seeds = seeds();
        let s = &seeds[seed.index(seeds.len())];
        let mut body = s.body.clone();
        body["type"] = Value::from(t);
        let r = run(&body, s.network);
        prop_assert!(matches!(r, Err(Error::Malformed(_))), "{:?}", r);
    }

    #[test]
    fn a_changed_payload_value_never_matches_the_old_root(seed in any::<Index>(), leaf in any::<Index>(), bump in 1u64..1000) {
        // Changing any integer of the payload while keeping the old signingRoot must be refused.
        let seeds = seeds();
        let s = &seeds[seed.index(seeds.len())];
        let mut body = s.body.clone();
        let good = run(&body, s.network).expect("seed").root;
        body["signingRoot"] = Value::from(good.to_hex());
        let mut all = Vec::new();
        leaves(&body, &mut Vec::new(), &mut all);
        // Integers inside the signed object: not fork_info (its epoch may not change the root)
        // and not a sync committee message's slot (it only picks the domain's epoch).
        let ints: Vec<_> = all
            .into_iter()
            .filter(|(p, v)| {
                is_decimal(v)
                    && p.first() != Some(&Seg::Key("fork_info".into()))
                    && p.first() != Some(&Seg::Key("sync_committee_message".into()))
            })
            .collect();
        prop_assume!(!ints.is_empty());
        let (path, v) = &ints[leaf.index(ints.len())];
        let old: u64 = v.as_str().expect("str").parse().expect("u64");
        let new = old.checked_add(bump).unwrap_or_else(|| old - bump);
        *get_mut(&mut body, path) = Value::from(new.to_string());
        let r = run(&body, s.network);
        prop_assert!(matches!(r, Err(Error::RootMismatch { .. })), "{:?} at {:?}", r, path);
    }
}
