//! Signing roots and domains against public vectors, plus the Web3Signer status classes of
//! malformed or incomplete sign requests.
//!
//! Vectors: `tests/vectors/signing-roots/` (consensus-spec-tests ForkData/SigningData, the
//! Web3Signer sign types with the minimal preset, compute_domain cases); see its README.

use std::path::PathBuf;

use dvsigner::signing::{
    self, compute_domain, compute_signing_root, domain::compute_fork_data_root, DomainType, Error,
    Network, SignKind,
};
use dvsigner::slashing::SlashableMessage;
use serde_json::{json, Value};

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/signing-roots")
}

fn hex_n<const N: usize>(v: &Value) -> [u8; N] {
    dvsigner::bls::parse_hex::<N>(v.as_str().expect("hex string")).expect("hex")
}

fn yaml(path: PathBuf) -> yaml_serde::Value {
    yaml_serde::from_str(&std::fs::read_to_string(&path).expect("read yaml")).expect("yaml")
}

fn yaml_hex<const N: usize>(v: &yaml_serde::Value, key: &str) -> [u8; N] {
    dvsigner::bls::parse_hex::<N>(v[key].as_str().expect("string")).expect("hex")
}

/// Every case directory of a consensus-spec-tests ssz_static handler.
fn ssz_static_cases(handler: &str) -> Vec<PathBuf> {
    let dir = vectors()
        .join("consensus-spec-tests/tests/mainnet/phase0/ssz_static")
        .join(handler)
        .join("ssz_random");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    cases
}

#[test]
fn consensus_spec_fork_data_roots() {
    for case in ssz_static_cases("ForkData") {
        let value = yaml(case.join("value.yaml"));
        let roots = yaml(case.join("roots.yaml"));
        let got = compute_fork_data_root(
            yaml_hex(&value, "current_version"),
            yaml_hex(&value, "genesis_validators_root"),
        );
        assert_eq!(got, yaml_hex::<32>(&roots, "root"), "{}", case.display());
    }
}

#[test]
fn consensus_spec_signing_data_roots() {
    for case in ssz_static_cases("SigningData") {
        let value = yaml(case.join("value.yaml"));
        let roots = yaml(case.join("roots.yaml"));
        let got = compute_signing_root(yaml_hex(&value, "object_root"), yaml_hex(&value, "domain"));
        assert_eq!(got, yaml_hex::<32>(&roots, "root"), "{}", case.display());
    }
}

#[test]
fn compute_domain_cases() {
    let v: Value = serde_json::from_slice(
        &std::fs::read(vectors().join("compute_domain_cases.json")).expect("read"),
    )
    .expect("json");
    let cases = v["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 5);
    for c in cases {
        let got = compute_domain(
            DomainType(hex_n(&c["domain_type"])),
            hex_n(&c["genesis_fork_version"]),
            hex_n(&c["genesis_validators_root"]),
        );
        assert_eq!(got, hex_n::<32>(&c["domain"]), "{}", c["network"]);
    }
}

/// The built-in networks' genesis fork versions give the domains of compute_domain_cases.json.
#[test]
fn built_in_genesis_versions_match_domain_vectors() {
    let v: Value = serde_json::from_slice(
        &std::fs::read(vectors().join("compute_domain_cases.json")).expect("read"),
    )
    .expect("json");
    for c in v["cases"].as_array().expect("cases") {
        let name = c["network"].as_str().expect("name");
        if let Some(n) = Network::built_in(name) {
            assert_eq!(
                n.genesis_fork_version,
                hex_n::<4>(&c["genesis_fork_version"]),
                "{name}"
            );
        }
    }
}

fn sign_type_cases() -> Vec<Value> {
    let v: Value = serde_json::from_slice(
        &std::fs::read(vectors().join("web3signer_sign_types_minimal.json")).expect("read"),
    )
    .expect("json");
    let cases = v["cases"].as_array().expect("cases").clone();
    assert_eq!(cases.len(), 11);
    cases
}

fn case(kind: &str) -> Value {
    sign_type_cases()
        .into_iter()
        .find(|c| c["web3signer_request"]["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} case"))["web3signer_request"]
        .clone()
}

fn prep(body: &Value, network: &Network) -> Result<signing::PreparedSign, Error> {
    signing::prepare(&serde_json::to_vec(body).expect("encode"), network)
}

#[test]
fn every_web3signer_sign_type_vector() {
    let net = Network::minimal_test();
    for c in sign_type_cases() {
        let name = c["name"].as_str().expect("name");
        let body = &c["web3signer_request"];
        let expected = hex_n::<32>(&c["signing_root"]);
        // With the supplied signingRoot (checked) ...
        let p = prep(body, &net).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.root.0, expected, "{name}");
        assert_eq!(
            p.kind.as_str(),
            body["type"].as_str().expect("type"),
            "{name}"
        );
        // ... and without it.
        let mut bare = body.clone();
        bare.as_object_mut().expect("object").remove("signingRoot");
        assert_eq!(prep(&bare, &net).expect(name).root.0, expected, "{name}");
        // The derived domain and object root agree with the vector's own.
        let domain = hex_n::<32>(&c["domain"]);
        assert_eq!(&domain[..4], &hex_n::<4>(&c["domain_type"]), "{name}");
        assert_eq!(
            compute_signing_root(hex_n(&c["object_root"]), domain),
            expected,
            "{name}"
        );
    }
}

#[test]
fn slashable_part_is_reported_for_blocks_and_attestations_only() {
    let net = Network::minimal_test();
    let gvr = hex_n::<32>(&json!(
        "0x04700007fabc8282644aed6d1c7c9e21d38a03a0c4ba193f3afe428824b3a673"
    ));
    for c in sign_type_cases() {
        let body = &c["web3signer_request"];
        let p = prep(body, &net).expect("prepare");
        match p.kind {
            SignKind::BlockV2 => {
                assert_eq!(
                    p.slashable,
                    Some((SlashableMessage::Block { slot: 0 }, gvr))
                );
            }
            SignKind::Attestation => {
                let msg = SlashableMessage::Attestation {
                    source_epoch: 0,
                    target_epoch: 0,
                };
                assert_eq!(p.slashable, Some((msg, gvr)));
            }
            other => assert!(p.slashable.is_none(), "{other:?}"),
        }
        assert_eq!(p.kind.is_slashable(), p.slashable.is_some());
    }
}

#[test]
fn unknown_or_missing_type_is_malformed() {
    let net = Network::minimal_test();
    for t in [
        json!("BLS_TO_EXECUTION_CHANGE"),
        json!("ATTESTATIONS"),
        json!(""),
        json!(3),
        Value::Null,
    ] {
        let mut body = case("ATTESTATION");
        body["type"] = t.clone();
        assert!(matches!(prep(&body, &net), Err(Error::Malformed(_))), "{t}");
    }
    let mut body = case("ATTESTATION");
    body.as_object_mut().expect("object").remove("type");
    assert!(matches!(prep(&body, &net), Err(Error::Malformed(_))));
    for raw in [
        &b""[..],
        b"{",
        b"[]",
        b"null",
        b"\"ATTESTATION\"",
        b"{\"type\":\"ATTESTATION\"}}",
    ] {
        assert!(
            matches!(signing::prepare(raw, &net), Err(Error::Malformed(_))),
            "{raw:?}"
        );
    }
}

#[test]
fn type_is_case_insensitive() {
    let net = Network::minimal_test();
    for c in sign_type_cases() {
        let mut body = c["web3signer_request"].clone();
        let t = body["type"].as_str().expect("type").to_lowercase();
        body["type"] = json!(t);
        assert_eq!(
            prep(&body, &net).expect(&t).root.0,
            hex_n::<32>(&c["signing_root"]),
            "{t}"
        );
    }
}

#[test]
fn missing_fork_info_or_payload_is_a_root_error() {
    let net = Network::minimal_test();
    for c in sign_type_cases() {
        let body = c["web3signer_request"].clone();
        let kind = body["type"].as_str().expect("type").to_owned();
        let needs_fork_info = !matches!(kind.as_str(), "DEPOSIT" | "VALIDATOR_REGISTRATION");
        let mut absent = body.clone();
        absent.as_object_mut().expect("object").remove("fork_info");
        let mut null = body.clone();
        null["fork_info"] = Value::Null;
        for b in [absent, null] {
            let r = prep(&b, &net);
            if needs_fork_info {
                assert!(matches!(r, Err(Error::Root(_))), "{kind}: {r:?}");
            } else {
                assert_eq!(
                    r.expect(&kind).root.0,
                    hex_n::<32>(&c["signing_root"]),
                    "{kind}"
                );
            }
        }
        // Remove the payload (the one key that is not type/fork_info/signingRoot).
        let mut no_payload = body.clone();
        let obj = no_payload.as_object_mut().expect("object");
        let key = obj
            .keys()
            .find(|k| !["type", "fork_info", "signingRoot"].contains(&k.as_str()))
            .expect("payload key")
            .clone();
        obj.remove(&key);
        assert!(
            matches!(prep(&no_payload, &net), Err(Error::Root(_))),
            "{kind} without {key}"
        );
    }
}

#[test]
fn supplied_root_is_checked_under_both_spellings() {
    let net = Network::minimal_test();
    for c in sign_type_cases() {
        let body = c["web3signer_request"].clone();
        let good = body["signingRoot"].clone();
        let mut snake = body.clone();
        let obj = snake.as_object_mut().expect("object");
        obj.remove("signingRoot");
        obj.insert("signing_root".into(), good.clone());
        assert!(prep(&snake, &net).is_ok());

        let mut bad_root = hex_n::<32>(&good);
        bad_root[31] ^= 1;
        let bad = json!(format!("0x{}", hex::encode(bad_root)));
        for key in ["signingRoot", "signing_root"] {
            let mut b = body.clone();
            let obj = b.as_object_mut().expect("object");
            obj.remove("signingRoot");
            obj.insert(key.into(), bad.clone());
            match prep(&b, &net) {
                Err(Error::RootMismatch { supplied, computed }) => {
                    assert_eq!(supplied.0, bad_root);
                    assert_eq!(computed.0, hex_n::<32>(&good));
                }
                other => panic!("{key}: {other:?}"),
            }
        }
        // A supplied root that is not 32 bytes of hex is malformed.
        let mut b = body.clone();
        b["signingRoot"] = json!("0x1234");
        assert!(matches!(prep(&b, &net), Err(Error::Malformed(_))));
    }
}

/// Replaces every decimal-string value with a JSON number.
fn numbers_as_numbers(v: &mut Value) {
    match v {
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            *v = Value::Number(s.parse::<u64>().expect("u64").into());
        }
        Value::Array(a) => a.iter_mut().for_each(numbers_as_numbers),
        Value::Object(o) => o.values_mut().for_each(numbers_as_numbers),
        _ => {}
    }
}

#[test]
fn numbers_may_be_json_numbers() {
    let net = Network::minimal_test();
    for c in sign_type_cases() {
        let mut body = c["web3signer_request"].clone();
        numbers_as_numbers(&mut body);
        assert_eq!(
            prep(&body, &net).expect("prepare").root.0,
            hex_n::<32>(&c["signing_root"]),
            "{}",
            c["name"]
        );
    }
}

/// Adds unknown keys at every object level.
fn add_unknown_fields(v: &mut Value) {
    if let Value::Object(o) = v {
        o.values_mut().for_each(add_unknown_fields);
        o.insert("x_unknown".into(), json!({"nested": [1, "two", null]}));
    } else if let Value::Array(a) = v {
        a.iter_mut().for_each(add_unknown_fields);
    }
}

#[test]
fn unknown_fields_are_ignored() {
    let net = Network::minimal_test();
    for c in sign_type_cases() {
        let mut body = c["web3signer_request"].clone();
        add_unknown_fields(&mut body);
        body["proofs"] = json!([{"index": "1", "proof": ["0x00"]}]);
        assert_eq!(
            prep(&body, &net).expect("prepare").root.0,
            hex_n::<32>(&c["signing_root"]),
            "{}",
            c["name"]
        );
    }
}

#[test]
fn hex_without_prefix_and_upper_case_is_accepted() {
    let net = Network::minimal_test();
    fn strip(v: &mut Value) {
        match v {
            Value::String(s) if s.starts_with("0x") => *s = s[2..].to_uppercase(),
            Value::Array(a) => a.iter_mut().for_each(strip),
            Value::Object(o) => o.values_mut().for_each(strip),
            _ => {}
        }
    }
    for c in sign_type_cases() {
        let mut body = c["web3signer_request"].clone();
        strip(&mut body);
        assert_eq!(
            prep(&body, &net).expect("prepare").root.0,
            hex_n::<32>(&c["signing_root"]),
            "{}",
            c["name"]
        );
    }
}

/// An edit of a request body.
type Edit = Box<dyn Fn(&mut Value)>;

#[test]
fn bad_nested_values_are_malformed() {
    let net = Network::minimal_test();
    let edits: Vec<(&str, Edit)> = vec![
        (
            "ATTESTATION",
            Box::new(|b| b["attestation"]["slot"] = json!("-1")),
        ),
        (
            "ATTESTATION",
            Box::new(|b| b["attestation"]["slot"] = json!("18446744073709551616")),
        ),
        (
            "ATTESTATION",
            Box::new(|b| b["attestation"]["slot"] = json!(1.5)),
        ),
        (
            "ATTESTATION",
            Box::new(|b| b["attestation"]["beacon_block_root"] = json!("0x00")),
        ),
        (
            "ATTESTATION",
            Box::new(|b| b["attestation"]["target"]["root"] = json!("0xZZ")),
        ),
        (
            "ATTESTATION",
            Box::new(|b| drop(b["attestation"].as_object_mut().map(|o| o.remove("source")))),
        ),
        (
            "ATTESTATION",
            Box::new(|b| b["fork_info"]["fork"]["epoch"] = json!("x")),
        ),
        (
            "ATTESTATION",
            Box::new(|b| {
                drop(
                    b["fork_info"]
                        .as_object_mut()
                        .map(|o| o.remove("genesis_validators_root")),
                )
            }),
        ),
        (
            "ATTESTATION",
            Box::new(|b| b["attestation"] = json!("not an object")),
        ),
        (
            "BLOCK_V2",
            Box::new(|b| {
                drop(
                    b["beacon_block"]
                        .as_object_mut()
                        .map(|o| o.remove("block_header")),
                )
            }),
        ),
        (
            "BLOCK_V2",
            Box::new(|b| b["beacon_block"]["version"] = json!("bellatrix")),
        ),
        (
            "BLOCK_V2",
            Box::new(|b| b["beacon_block"]["version"] = json!("SHARDING")),
        ),
        (
            "DEPOSIT",
            Box::new(|b| b["deposit"]["genesis_fork_version"] = json!("0x0000000001")),
        ),
        (
            "AGGREGATE_AND_PROOF",
            Box::new(|b| b["aggregate_and_proof"]["aggregate"]["aggregation_bits"] = json!("0x00")),
        ),
        (
            "AGGREGATE_AND_PROOF",
            Box::new(|b| {
                drop(
                    b["aggregate_and_proof"]
                        .as_object_mut()
                        .map(|o| o.remove("selection_proof")),
                )
            }),
        ),
        (
            "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF",
            Box::new(|b| {
                b["contribution_and_proof"]["contribution"]["aggregation_bits"] = json!("0x0000")
            }),
        ),
        (
            "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF",
            Box::new(|b| {
                b["contribution_and_proof"]["contribution"]["aggregation_bits"] = json!("0x")
            }),
        ),
    ];
    for (i, (kind, edit)) in edits.iter().enumerate() {
        let mut body = case(kind);
        edit(&mut body);
        let r = prep(&body, &net);
        assert!(
            matches!(r, Err(Error::Malformed(_))),
            "edit {i} on {kind}: {r:?}"
        );
    }
}

#[test]
fn contribution_bitvector_size_follows_the_preset() {
    // The minimal vector as it is: its fork info is not mainnet's, which is refused first.
    let minimal_body = case("SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF");
    let mainnet = Network::built_in("mainnet").expect("mainnet");
    assert!(matches!(
        prep(&minimal_body, &mainnet),
        Err(Error::WrongNetwork(_))
    ));
    // With mainnet's fork info, the minimal 1-byte bitvector is refused under the mainnet preset
    // (16 bytes).
    let mut body = minimal_body.clone();
    body.as_object_mut().expect("object").remove("signingRoot");
    body["fork_info"] = fork_info("0x04000000", "0x05000000", 364_032);
    assert!(matches!(prep(&body, &mainnet), Err(Error::Malformed(_))));
    let mut wide = body.clone();
    wide["contribution_and_proof"]["contribution"]["aggregation_bits"] =
        json!(format!("0x24{}", "00".repeat(15)));
    assert!(prep(&wide, &mainnet).is_ok());
    wide["fork_info"] = minimal_body["fork_info"].clone();
    assert!(matches!(
        prep(&wide, &Network::minimal_test()),
        Err(Error::Malformed(_))
    ));
}

fn fork_info(previous: &str, current: &str, epoch: u64) -> Value {
    json!({
        "fork": {"previous_version": previous, "current_version": current, "epoch": epoch.to_string()},
        "genesis_validators_root": "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"
    })
}

fn exit(epoch: u64, fi: Value) -> Value {
    json!({"type": "VOLUNTARY_EXIT", "fork_info": fi, "voluntary_exit": {"epoch": epoch.to_string(), "validator_index": "7"}})
}

#[test]
fn exits_from_deneb_on_use_the_capella_version() {
    let net = Network::built_in("mainnet").expect("mainnet");
    let deneb = net.deneb_fork_epoch;
    let capella = "0x03000000";
    for epoch in [deneb, deneb + 1, 400_000] {
        // Whatever fork_info says (here Deneb->Electra), the root equals the one signed under
        // Capella through ordinary fork selection.
        let pinned = prep(
            &exit(epoch, fork_info("0x04000000", "0x05000000", 364_032)),
            &net,
        )
        .expect("exit");
        let capella_fi = prep(&exit(epoch, fork_info(capella, capella, 0)), &net).expect("exit");
        assert_eq!(pinned.root, capella_fi.root, "epoch {epoch}");
    }
    // Before Deneb the request's fork_info decides.
    let before = deneb - 1;
    let a = prep(
        &exit(before, fork_info("0x02000000", "0x03000000", 194_048)),
        &net,
    )
    .expect("exit");
    let b = prep(
        &exit(before, fork_info("0x03000000", "0x03000000", 0)),
        &net,
    )
    .expect("exit");
    let c = prep(
        &exit(before, fork_info("0x02000000", "0x02000000", 0)),
        &net,
    )
    .expect("exit");
    assert_eq!(a.root, b.root);
    assert_ne!(a.root, c.root);
    // On a network without Deneb scheduled, fork_info always decides.
    let minimal = Network::minimal_test();
    let d = prep(
        &exit(deneb, fork_info("0x04000001", "0x05000001", 0)),
        &minimal,
    )
    .expect("exit");
    let e = prep(
        &exit(deneb, fork_info("0x05000001", "0x05000001", 0)),
        &minimal,
    )
    .expect("exit");
    assert_eq!(d.root, e.root);
}

fn attestation(target: u64, fi: Value) -> Value {
    json!({
        "type": "ATTESTATION", "fork_info": fi,
        "attestation": {
            "slot": (target * 32).to_string(), "index": "3",
            "beacon_block_root": format!("0x{}", "11".repeat(32)),
            "source": {"epoch": (target - 1).to_string(), "root": format!("0x{}", "22".repeat(32))},
            "target": {"epoch": target.to_string(), "root": format!("0x{}", "33".repeat(32))}
        }
    })
}

#[test]
fn fork_epoch_is_compared_with_the_message_epoch_like_lodestar_sends_it() {
    let net = Network::built_in("mainnet").expect("mainnet");
    let (prev, cur) = ("0x04000000", "0x05000000");
    let target = 370_000;
    // Lodestar: fork.epoch = the message's own epoch -> current version.
    let lodestar = prep(&attestation(target, fork_info(prev, cur, target)), &net).expect("att");
    // Other clients: fork.epoch = the activation epoch -> current version too.
    let activation = prep(&attestation(target, fork_info(prev, cur, 364_032)), &net).expect("att");
    let only_current = prep(&attestation(target, fork_info(cur, cur, 0)), &net).expect("att");
    assert_eq!(lodestar.root, activation.root);
    assert_eq!(lodestar.root, only_current.root);
    // A fork epoch after the message epoch selects the previous version, schedule or not.
    let early = prep(&attestation(target, fork_info(prev, cur, target + 1)), &net).expect("att");
    let only_previous = prep(&attestation(target, fork_info(prev, prev, 0)), &net).expect("att");
    assert_eq!(early.root, only_previous.root);
    assert_ne!(early.root, lodestar.root);
}

#[test]
fn aggregate_v1_with_committee_bits_equals_v2_electra() {
    let net = Network::built_in("mainnet").expect("mainnet");
    let data = json!({
        "aggregator_index": "9",
        "aggregate": {
            "aggregation_bits": "0x0b",
            "data": attestation(370_000, Value::Null)["attestation"].clone(),
            "signature": format!("0x{}", "ab".repeat(96)),
            "committee_bits": "0x0100000000000000"
        },
        "selection_proof": format!("0x{}", "cd".repeat(96))
    });
    let fi = fork_info("0x04000000", "0x05000000", 364_032);
    let v1 = json!({"type": "AGGREGATE_AND_PROOF", "fork_info": fi, "aggregate_and_proof": data});
    let v2 = json!({"type": "AGGREGATE_AND_PROOF_V2", "fork_info": fi,
                    "aggregate_and_proof": {"version": "ELECTRA", "data": data}});
    let r1 = prep(&v1, &net).expect("v1");
    assert_eq!(r1.root, prep(&v2, &net).expect("v2").root);
    // The same data declared DENEB hashes as a phase0 aggregate: a different root.
    let v2_deneb = json!({"type": "AGGREGATE_AND_PROOF_V2", "fork_info": fi,
                          "aggregate_and_proof": {"version": "DENEB", "data": data}});
    assert_ne!(r1.root, prep(&v2_deneb, &net).expect("deneb").root);
    // ELECTRA without committee_bits is malformed; committee_bits must be 8 bytes on mainnet.
    let mut no_bits = v2.clone();
    no_bits["aggregate_and_proof"]["data"]["aggregate"]
        .as_object_mut()
        .expect("object")
        .remove("committee_bits");
    assert!(matches!(prep(&no_bits, &net), Err(Error::Malformed(_))));
    let mut short = v1.clone();
    short["aggregate_and_proof"]["aggregate"]["committee_bits"] = json!("0x01");
    assert!(matches!(prep(&short, &net), Err(Error::Malformed(_))));
}

#[test]
fn header_versions_hash_alike_and_full_block_versions_need_block() {
    let net = Network::minimal_test();
    let header = case("BLOCK_V2");
    for v in ["CAPELLA", "DENEB", "ELECTRA", "FULU"] {
        let mut b = header.clone();
        b["beacon_block"]["version"] = json!(v);
        assert_eq!(
            prep(&b, &net).expect(v).root,
            prep(&header, &net).expect("bellatrix").root
        );
    }
    for v in ["PHASE0", "ALTAIR"] {
        let mut b = header.clone();
        b["beacon_block"]["version"] = json!(v);
        assert!(
            matches!(prep(&b, &net), Err(Error::Malformed(_))),
            "{v} without block"
        );
    }
}

#[test]
fn error_types_are_send_sync_static() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Error>();
    check::<dvsigner::signing::network::Error>();
}

/// Roots and signatures from the independent oracle (`tests/oracle/generate.py`: remerkleable +
/// py_ecc), every sign type and fork variant on mainnet, signed with interop key 0.
#[test]
fn oracle_fixtures_roots_and_signatures() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/fixtures.json");
    let doc: Value =
        serde_json::from_slice(&std::fs::read(path).expect("read fixtures")).expect("json");
    let sk = dvsigner::keys::secret::SecretKey::from_bytes(&hex_n::<32>(&doc["secret_key"]))
        .expect("secret key");
    // The well-known public key of interop validator 0.
    assert_eq!(
        sk.public_key().bytes().to_hex(),
        "0xa99a76ed7796f7be22d5b7e85deeb7c5677e88e511e0b337618f8c4eb61349b4bf2d153f649f7b53359fe8b94a38e44c"
    );
    assert_eq!(
        sk.public_key().bytes().to_hex(),
        doc["public_key"].as_str().expect("pk")
    );
    let cases = doc["cases"].as_array().expect("cases");
    let mut kinds = std::collections::HashSet::new();
    for c in cases {
        let name = c["name"].as_str().expect("name");
        assert_eq!(c["network"], "mainnet");
        let net =
            Network::from_name_or_path(c["network"].as_str().expect("network")).expect("network");
        let p = prep(&c["request"], &net).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.root.0, hex_n::<32>(&c["signing_root"]), "{name}");
        assert_eq!(
            sk.sign(&p.root).to_hex(),
            c["signature"].as_str().expect("sig"),
            "{name}"
        );
        kinds.insert(p.kind);
    }
    assert_eq!(
        kinds.len(),
        SignKind::ALL.len(),
        "every sign type has an oracle case"
    );
    assert!(cases.len() >= 28);
}

/// Every minimal-preset vector sent to a mainnet node is refused as another network's request,
/// naming the minimal preset, except VALIDATOR_REGISTRATION, which carries no network signal.
#[test]
fn minimal_vectors_on_mainnet_are_another_networks_requests() {
    let mainnet = Network::built_in("mainnet").expect("mainnet");
    for c in sign_type_cases() {
        let body = &c["web3signer_request"];
        let kind = body["type"].as_str().expect("type");
        match prep(body, &mainnet) {
            Err(Error::WrongNetwork(m)) => {
                assert_ne!(kind, "VALIDATOR_REGISTRATION");
                assert_eq!(m.kind, signing::MismatchKind::OtherNetwork, "{kind}");
                assert_eq!(m.fork_version, [0, 0, 0, 1], "{kind}");
                let text = m.to_string();
                assert!(text.contains("configured for mainnet"), "{kind}: {text}");
                assert!(text.contains("minimal preset"), "{kind}: {text}");
                assert!(text.contains("--network"), "{kind}: {text}");
            }
            other => assert_eq!(kind, "VALIDATOR_REGISTRATION", "{other:?}"),
        }
    }
}
