//! Cluster definition: split, strict parsing, verification and lookups.

use dvsigner::bls::{Signature, SigningRoot};
use dvsigner::cluster::split::OperatorShares;
use dvsigner::cluster::{split_keys, CaSource, ClusterDefinition, Error, Operator};
use dvsigner::keys::SecretKey;
use dvsigner::threshold::{combine, ShareIndex};
use dvsigner::tls::Fingerprint;
use serde_json::{json, Value};

fn operators(n: usize) -> Vec<Operator> {
    (0..n)
        .map(|i| {
            let name = format!("op{}", (b'a' + i as u8) as char);
            Operator::new(name.clone(), format!("https://{name}:9000"))
        })
        .collect()
}

fn sample() -> (Vec<SecretKey>, ClusterDefinition, Vec<OperatorShares>) {
    let keys = vec![SecretKey::random(), SecretKey::random()];
    let mut ops = operators(4);
    ops[0].tls_fingerprint = Some(Fingerprint([0xab; 32]));
    ops[1].tls_ca = Some(CaSource::Path("ca.pem".into()));
    let (def, shares) = split_keys(&keys, 3, &ops).expect("3-of-4");
    (keys, def, shares)
}

fn tampered(
    def: &ClusterDefinition,
    edit: impl FnOnce(&mut Value),
) -> Result<ClusterDefinition, Error> {
    let mut v: Value = serde_json::from_str(&def.to_json_pretty()).expect("json");
    edit(&mut v);
    ClusterDefinition::from_json(&v.to_string())
}

#[test]
fn split_definition_round_trips_and_hash_ignores_layout() {
    let (keys, def, _) = sample();
    def.verify().expect("verified");
    assert_eq!(def.validators().len(), 2);
    let pretty = def.to_json_pretty();
    let back = ClusterDefinition::from_json(&pretty).expect("parse pretty");
    assert_eq!(back, def);
    assert_eq!(back.hash(), def.hash());
    let compact = serde_json::to_string(&def).expect("compact");
    assert_ne!(compact, pretty);
    assert_eq!(
        ClusterDefinition::from_json(&compact)
            .expect("parse")
            .hash(),
        def.hash()
    );
    // The hash is the SHA-256 of the compact serialization, as documented.
    use sha2::Digest;
    let digest: [u8; 32] = sha2::Sha256::digest(compact.as_bytes()).into();
    assert_eq!(def.hash().0, digest);
    assert!(def.hash().to_string().starts_with("0x"));
    // Any change changes the hash.
    let moved = tampered(&def, |v| {
        v["operators"][2]["url"] = json!("https://elsewhere:9000")
    })
    .expect("still valid");
    assert_ne!(moved.hash(), def.hash());
    // File field values.
    let v: Value = serde_json::from_str(&pretty).expect("json");
    assert_eq!(v["version"], json!(1));
    assert_eq!(
        v["validators"][0]["group_pubkey"],
        json!(keys[0].public_key().bytes().to_hex())
    );
    assert_eq!(v["validators"][0]["threshold"], json!(3));
    assert_eq!(v["validators"][0]["share_count"], json!(4));
    assert_eq!(
        v["validators"][0]["commitments"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(v["operators"][1]["tls_ca"], json!("ca.pem"));
    assert!(v["operators"][2].get("tls_fingerprint").is_none());
}

#[test]
fn operator_shares_sign_and_any_threshold_of_them_combine_to_the_group_signature() {
    let (keys, def, shares) = sample();
    let root = SigningRoot([9; 32]);
    assert_eq!(shares.len(), 4);
    for (k, sk) in keys.iter().enumerate() {
        let v = def.validator(&sk.public_key().bytes()).expect("validator");
        let partials: Vec<(ShareIndex, Signature)> = shares
            .iter()
            .skip(1) // operator a is down
            .map(|(op, list)| {
                let share = &list[k];
                let (_, sdef) = def.share(&share.public_key().bytes()).expect("share known");
                assert_eq!(&sdef.operator, op);
                assert_eq!(sdef.index, share.index);
                (share.index, share.secret.sign(&root))
            })
            .collect();
        let sig = combine(&partials, v.threshold as usize).expect("combine");
        assert_eq!(sig.to_bytes(), sk.sign(&root).to_bytes());
    }
    for (op, list) in &shares {
        let held: Vec<_> = def.shares_of(op).collect();
        assert_eq!(held.len(), keys.len());
        for ((group, index, share_pk), (share, sk)) in held.iter().zip(list.iter().zip(&keys)) {
            assert_eq!(*group, sk.public_key());
            assert_eq!(*index, share.index);
            assert_eq!(*share_pk, share.public_key());
        }
    }
    assert_eq!(
        def.operator("opa").map(|o| o.tls_fingerprint),
        Some(Some(Fingerprint([0xab; 32])))
    );
    assert!(def.operator("nobody").is_none());
    assert_eq!(def.shares_of("nobody").count(), 0);
    assert!(def
        .validator(&SecretKey::random().public_key().bytes())
        .is_none());
}

#[test]
fn split_refuses_thresholds_that_are_not_a_majority() {
    let keys = vec![SecretKey::random()];
    for (t, n) in [(2u32, 4usize), (1, 2), (3, 6), (5, 4), (0, 3)] {
        let err = split_keys(&keys, t, &operators(n)).err();
        match err {
            Some(e @ Error::ThresholdNotMajority { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("majority") && msg.contains("t > n/2"), "{msg}");
            }
            other => panic!("{t}-of-{n}: {other:?}"),
        }
    }
    for (t, n) in [(2u32, 2usize), (2, 3), (3, 4), (3, 5), (4, 7), (7, 7)] {
        let (def, shares) = split_keys(&keys, t, &operators(n)).expect("majority");
        assert_eq!(shares.len(), n);
        assert_eq!(def.validators()[0].threshold, t);
    }
    assert!(matches!(
        split_keys(&keys, 1, &operators(1)),
        Err(Error::TooFewOperators(1))
    ));
    let dup = vec![
        SecretKey::from_bytes(&[3; 32]).expect("k"),
        SecretKey::from_bytes(&[3; 32]).expect("k"),
    ];
    assert!(matches!(
        split_keys(&dup, 2, &operators(3)),
        Err(Error::DuplicateValidator(_))
    ));
    let mut bad = operators(3);
    bad[1].name = "../x".into();
    assert!(matches!(
        split_keys(&keys, 2, &bad),
        Err(Error::InvalidOperatorName(_))
    ));
}

#[test]
fn verification_refuses_tampered_definitions() {
    let (_, def, _) = sample();
    let shares = |v: &Value| v["validators"][0]["shares"].clone();

    let e = tampered(&def, |v| v["extra"] = json!(1)).err();
    assert!(matches!(e, Some(Error::Json(_))), "{e:?}");
    let e = tampered(&def, |v| {
        v["validators"][0]["shares"][0]["note"] = json!("x")
    })
    .err();
    assert!(matches!(e, Some(Error::Json(_))), "{e:?}");
    let e = tampered(&def, |v| v["version"] = json!(2)).err();
    assert!(
        matches!(e, Some(Error::UnsupportedVersion { found: 2, .. })),
        "{e:?}"
    );

    // Swap two share public keys: each no longer matches the commitments at its index.
    let e = tampered(&def, |v| {
        let s = shares(v);
        v["validators"][0]["shares"][0]["pubkey"] = s[1]["pubkey"].clone();
        v["validators"][0]["shares"][1]["pubkey"] = s[0]["pubkey"].clone();
    })
    .err();
    assert!(matches!(e, Some(Error::ShareKeyMismatch { .. })), "{e:?}");

    // Share pubkey of another validator.
    let e = tampered(&def, |v| {
        v["validators"][0]["shares"][2]["pubkey"] =
            v["validators"][1]["shares"][2]["pubkey"].clone();
    })
    .err();
    assert!(matches!(e, Some(Error::ShareKeyMismatch { .. })), "{e:?}");

    // commitments[0] is not the group key.
    let e = tampered(&def, |v| {
        v["validators"][0]["group_pubkey"] = v["validators"][1]["group_pubkey"].clone();
    })
    .err();
    assert!(matches!(e, Some(Error::GroupKeyMismatch { .. })), "{e:?}");

    // Fewer commitments than the threshold.
    let e = tampered(&def, |v| {
        v["validators"][0]["commitments"]
            .as_array_mut()
            .expect("list")
            .pop();
    })
    .err();
    assert!(
        matches!(
            e,
            Some(Error::ThresholdMismatch {
                threshold: 3,
                commitments: 2,
                ..
            })
        ),
        "{e:?}"
    );

    // Threshold lowered below a majority.
    let e = tampered(&def, |v| v["validators"][0]["threshold"] = json!(2)).err();
    assert!(
        matches!(
            e,
            Some(Error::ThresholdNotMajority {
                threshold: 2,
                shares: 4,
                minimum: 3,
                ..
            })
        ),
        "{e:?}"
    );

    // n does not match the share list.
    let e = tampered(&def, |v| {
        v["validators"][0]["shares"]
            .as_array_mut()
            .expect("list")
            .pop();
    })
    .err();
    assert!(
        matches!(
            e,
            Some(Error::ShareCountMismatch {
                declared: 4,
                actual: 3,
                ..
            })
        ),
        "{e:?}"
    );

    // Repeated index / index above n / index 0.
    let e = tampered(&def, |v| {
        v["validators"][0]["shares"][1]["index"] = json!(1)
    })
    .err();
    assert!(matches!(e, Some(Error::BadShareIndex { .. })), "{e:?}");
    let e = tampered(&def, |v| {
        v["validators"][0]["shares"][3]["index"] = json!(5)
    })
    .err();
    assert!(matches!(e, Some(Error::BadShareIndex { .. })), "{e:?}");
    let e = tampered(&def, |v| {
        v["validators"][0]["shares"][3]["index"] = json!(0)
    })
    .err();
    assert!(matches!(e, Some(Error::Json(_))), "{e:?}");

    // Unknown operator, operator holding two shares, duplicate operator, bad URL.
    let e = tampered(&def, |v| {
        v["validators"][0]["shares"][0]["operator"] = json!("ghost")
    })
    .err();
    assert!(matches!(e, Some(Error::UnknownOperator { .. })), "{e:?}");
    let e = tampered(&def, |v| {
        v["validators"][0]["shares"][0]["operator"] = json!("opb")
    })
    .err();
    assert!(
        matches!(e, Some(Error::OperatorHoldsTwoShares { .. })),
        "{e:?}"
    );
    let e = tampered(&def, |v| {
        let first = v["operators"][0].clone();
        v["operators"].as_array_mut().expect("list").push(first);
    })
    .err();
    assert!(matches!(e, Some(Error::DuplicateOperator(_))), "{e:?}");
    let e = tampered(&def, |v| v["operators"][0]["url"] = json!("ftp://x")).err();
    assert!(matches!(e, Some(Error::InvalidUrl { .. })), "{e:?}");

    // Duplicate validator.
    let e = tampered(&def, |v| {
        let first = v["validators"][0].clone();
        v["validators"].as_array_mut().expect("list").push(first);
    })
    .err();
    assert!(matches!(e, Some(Error::DuplicateValidator(_))), "{e:?}");

    // An invalid point (identity) is refused while parsing.
    let e = tampered(&def, |v| {
        v["validators"][0]["shares"][0]["pubkey"] = json!(format!("0xc0{}", "00".repeat(47)));
    })
    .err();
    assert!(matches!(e, Some(Error::Json(_))), "{e:?}");

    // Untouched it still parses.
    assert!(tampered(&def, |_| {}).is_ok());
}

#[test]
fn load_and_save_round_trip_through_a_file() {
    let (_, def, _) = sample();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cluster.json");
    def.save(&path).expect("save");
    let loaded = ClusterDefinition::load(&path).expect("load");
    assert_eq!(loaded.hash(), def.hash());
    assert!(matches!(
        ClusterDefinition::load(&dir.path().join("missing.json")),
        Err(Error::Io { .. })
    ));
    // Inline PEM CA is kept as PEM, not a path.
    let with_pem = tampered(&def, |v| {
        v["operators"][3]["tls_ca"] =
            json!("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    })
    .expect("valid");
    assert!(matches!(
        with_pem.operators()[3].tls_ca,
        Some(CaSource::Pem(_))
    ));
}
