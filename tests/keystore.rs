//! EIP-2335 keystore vectors and key loading, one libtest-mimic trial per vector file or case.
//!
//! Vectors: `tests/vectors/keystores/` (see its README for provenance). Every file in `eip2335/`,
//! `eip2335-low-cost/`, `invalid/` and `valid-variants/` and every case of
//! `password_normalisation.json` becomes a named trial; a vector file without an expectation
//! fails its trial rather than being skipped.

use std::path::{Path, PathBuf};

use dvsigner::bls::PublicKeyBytes;
use dvsigner::keys::interop::interop_secret_key;
use dvsigner::keys::keystore::{normalise_password, Error, KdfParams, Keystore};
use dvsigner::keys::store::{load_key_config_dir, load_keystores_dir, KeyOrigin, KeyStore};
use dvsigner::keys::{Password, SecretKey};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

type TestResult = Result<(), Failed>;

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/keystores")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn files_in(dir: &str) -> Vec<(String, PathBuf)> {
    let mut out: Vec<_> = std::fs::read_dir(vectors().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                format!("{dir}/{}", p.file_name().expect("name").to_string_lossy()),
                p,
            )
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no vectors in {dir}");
    out
}

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(msg().into())
    }
}

/// The official password, secret and pubkey, and the per-file facts of `eip2335_vectors.json`.
struct Official {
    password: String,
    secret: String,
    pubkey: PublicKeyBytes,
    facts: Vec<Value>,
}

fn official() -> Official {
    let v = read_json(&vectors().join("eip2335_vectors.json"));
    Official {
        password: v["password"].as_str().expect("password").to_owned(),
        secret: v["secret"].as_str().expect("secret").to_owned(),
        pubkey: PublicKeyBytes::parse(v["pubkey"].as_str().expect("pubkey")).expect("pubkey hex"),
        facts: v["keystores"].as_array().expect("keystores").clone(),
    }
}

/// Official (and low-cost) keystores decrypt to the official secret and match their listed facts.
fn official_keystore(name: &str, path: &Path) -> TestResult {
    let o = official();
    let facts = o
        .facts
        .iter()
        .find(|f| f["file"] == name)
        .ok_or_else(|| format!("{name} is not listed in eip2335_vectors.json"))?;
    let ks = Keystore::from_json(&std::fs::read_to_string(path)?).map_err(|e| e.to_string())?;
    let expected_kdf = match facts["kdf"].as_str() {
        Some("scrypt") => KdfParams::Scrypt {
            n: facts["n"].as_u64().ok_or("n")? as u32,
            r: facts["r"].as_u64().ok_or("r")? as u32,
            p: facts["p"].as_u64().ok_or("p")? as u32,
        },
        Some("pbkdf2") => KdfParams::Pbkdf2 {
            c: facts["c"].as_u64().ok_or("c")? as u32,
        },
        other => return Err(format!("unexpected kdf {other:?}").into()),
    };
    ensure(ks.kdf() == expected_kdf, || {
        format!("kdf {:?} != {expected_kdf:?}", ks.kdf())
    })?;
    ensure(facts["path"] == ks.path(), || format!("path {}", ks.path()))?;
    ensure(facts["uuid"] == ks.uuid().to_string(), || {
        format!("uuid {}", ks.uuid())
    })?;
    ensure(ks.pubkey() == Some(o.pubkey), || {
        format!("pubkey field {:?}", ks.pubkey())
    })?;

    let sk = ks
        .decrypt(&Password::new(o.password))
        .map_err(|e| e.to_string())?;
    let secret = hex::encode(sk.expose_secret().as_ref());
    ensure(secret == o.secret, || {
        format!("secret {secret} != {}", o.secret)
    })?;
    ensure(sk.public_key().bytes() == o.pubkey, || {
        "derived pubkey differs".into()
    })?;

    let wrong = ks.decrypt(&Password::new("testpassword".into()));
    ensure(matches!(wrong, Err(Error::WrongPassword)), || {
        format!("wrong password: {wrong:?}")
    })
}

/// Each `invalid/` file is refused with the reason `invalid_keystores.json` gives for it.
fn invalid_keystore(name: &str, path: &Path) -> TestResult {
    let listed = read_json(&vectors().join("invalid_keystores.json"));
    let listed = listed["cases"].as_array().ok_or("cases")?;
    ensure(listed.iter().any(|c| c["file"] == name), || {
        format!("{name} not listed in invalid_keystores.json")
    })?;
    let err = match Keystore::from_json(&std::fs::read_to_string(path)?) {
        Ok(ks) => return Err(format!("accepted: {ks:?}").into()),
        Err(e) => e,
    };
    let file = name.trim_start_matches("invalid/");
    let ok = match file {
        "missingKdfSectionTestVector.json" => {
            matches!(&err, Error::Json(m) if m.contains("missing field `params`"))
        }
        "v3TestVector.json" => matches!(err, Error::UnsupportedVersion(3)),
        "unsupportedChecksumFunction.json" => {
            matches!(&err, Error::UnsupportedChecksum(f) if f == "sha128")
        }
        "unsupportedCipherFunction.json" => {
            matches!(&err, Error::UnsupportedCipher(f) if f == "aes-256-ctr")
        }
        "unsupportedKdfFunction.json" => matches!(&err, Error::UnsupportedKdf(f) if f == "pbkdf3"),
        "unsupportedPBKDF2Prf.json" => {
            matches!(&err, Error::UnsupportedPrf(f) if f == "hmac-sha512")
        }
        "unsupportedDkLen.json" => matches!(err, Error::UnsupportedDkLen(31)),
        "missingCrypto.json" => {
            matches!(&err, Error::Json(m) if m.contains("missing field `crypto`"))
        }
        "missingVersion.json" => {
            matches!(&err, Error::Json(m) if m.contains("missing field `version`"))
        }
        _ => return Err(format!("no expectation for {name} (refused with: {err})").into()),
    };
    ensure(ok, || format!("refused for the wrong reason: {err}"))
}

/// The extra-field variant loads (unknown top-level fields tolerated) and is, field for field,
/// the official scrypt keystore without its description; that one's decryption is checked by
/// `eip2335/scrypt.json`, so this trial avoids a third 256 MiB scrypt run.
fn valid_variant(path: &Path) -> TestResult {
    let ks = Keystore::from_json(&std::fs::read_to_string(path)?).map_err(|e| e.to_string())?;
    ensure(ks.description().is_none(), || {
        "description should be absent".into()
    })?;
    let mut official: Value = read_json(&vectors().join("eip2335/scrypt.json"));
    official
        .as_object_mut()
        .ok_or("object")?
        .remove("description");
    let official = Keystore::from_json(&official.to_string()).map_err(|e| e.to_string())?;
    ensure(ks == official, || format!("{ks:?} != {official:?}"))
}

/// Unknown fields inside `crypto` are still refused (only the top level is tolerant).
fn nested_unknown_field_refused() -> TestResult {
    let text = std::fs::read_to_string(vectors().join("eip2335-low-cost/pbkdf2_c512.json"))?;
    let mut v: Value = serde_json::from_str(&text)?;
    v["crypto"]["cipher"]["params"]["extra"] = Value::from(1);
    let r = Keystore::from_json(&v.to_string());
    ensure(
        matches!(&r, Err(Error::Json(m)) if m.contains("unknown field")),
        || format!("{r:?}"),
    )
}

fn normalisation_case(case: &Value) -> TestResult {
    let password = case["password"].as_str().ok_or("password")?;
    // The code-point list is the unambiguous form: check the JSON string against it first.
    let points: Vec<String> = password
        .chars()
        .map(|c| format!("U+{:04X}", u32::from(c)))
        .collect();
    let listed: Vec<String> = case["password_codepoints"]
        .as_array()
        .ok_or("password_codepoints")?
        .iter()
        .map(|p| p.as_str().unwrap_or_default().to_owned())
        .collect();
    ensure(points == listed, || {
        format!("code points {points:?} != {listed:?}")
    })?;
    let got = hex::encode(normalise_password(&Password::new(password.to_owned())).as_slice());
    let want = case["normalised_utf8_hex"]
        .as_str()
        .ok_or("normalised_utf8_hex")?;
    ensure(got == want, || format!("normalised {got} != {want}"))
}

fn round_trip(kdf: KdfParams) -> TestResult {
    let sk = SecretKey::random();
    let pw = Password::new("𝔱𝔢𝔰𝔱 pass".into());
    let ks = Keystore::encrypt(&sk, &pw, kdf, "m/12381/3600/7/0/0", "round trip")
        .map_err(|e| e.to_string())?;
    let parsed = Keystore::from_json(&ks.to_json()).map_err(|e| e.to_string())?;
    ensure(parsed.kdf() == kdf, || format!("{:?}", parsed.kdf()))?;
    ensure(parsed.path() == "m/12381/3600/7/0/0", || {
        parsed.path().into()
    })?;
    ensure(parsed.description() == Some("round trip"), || {
        "description".into()
    })?;
    ensure(parsed.pubkey() == Some(sk.public_key().bytes()), || {
        "pubkey".into()
    })?;
    // NFKD makes the fraktur letters ASCII, so the plain spelling is the same password.
    let back = parsed
        .decrypt(&Password::new("test pass".into()))
        .map_err(|e| e.to_string())?;
    ensure(back.expose_secret() == sk.expose_secret(), || {
        "secret differs".into()
    })?;
    let wrong = parsed.decrypt(&Password::new("test pass!".into()));
    ensure(matches!(wrong, Err(Error::WrongPassword)), || {
        format!("{wrong:?}")
    })?;
    // Fresh randomness: a second encryption differs in uuid and ciphertext.
    let again = Keystore::encrypt(&sk, &pw, kdf, "", "").map_err(|e| e.to_string())?;
    ensure(again.uuid() != ks.uuid(), || "uuid reused".into())?;
    ensure(again.to_json() != ks.to_json(), || {
        "identical output".into()
    })
}

const DEV_PASSWORD: &str = "public dev password";

fn write_keystore(dir: &Path, name: &str, sk: &SecretKey, password: &str) {
    let ks = Keystore::encrypt(
        sk,
        &Password::new(password.into()),
        KdfParams::insecure_fast(),
        "",
        "",
    )
    .expect("encrypt");
    std::fs::write(dir.join(name), ks.to_json()).expect("write keystore");
}

fn keystores_dir_partial_failures() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (ks_dir, pw_dir) = (tmp.path().join("keystores"), tmp.path().join("passwords"));
    std::fs::create_dir_all(&ks_dir)?;
    std::fs::create_dir_all(&pw_dir)?;
    let good: Vec<SecretKey> = (0..3).map(|_| SecretKey::random()).collect();
    for (i, sk) in good.iter().enumerate() {
        write_keystore(&ks_dir, &format!("good{i}.json"), sk, DEV_PASSWORD);
        std::fs::write(
            pw_dir.join(format!("good{i}.txt")),
            format!("{DEV_PASSWORD}\n"),
        )?;
    }
    write_keystore(
        &ks_dir,
        "nopassword.json",
        &SecretKey::random(),
        DEV_PASSWORD,
    );
    std::fs::write(ks_dir.join("corrupt.json"), "{\"crypto\": ")?;
    write_keystore(&ks_dir, "wrongpw.json", &SecretKey::random(), DEV_PASSWORD);
    std::fs::write(pw_dir.join("wrongpw.txt"), "not the password")?;
    std::fs::write(ks_dir.join("notes.txt"), "ignored")?;
    std::fs::create_dir(ks_dir.join("subdir.json"))?;

    let report = load_keystores_dir(&ks_dir, &pw_dir)?;
    let mut loaded: Vec<_> = report
        .keys
        .iter()
        .map(|k| k.secret.public_key().bytes())
        .collect();
    let mut want: Vec<_> = good.iter().map(|k| k.public_key().bytes()).collect();
    loaded.sort();
    want.sort();
    ensure(loaded == want, || format!("loaded {loaded:?}"))?;
    for k in &report.keys {
        ensure(
            matches!(&k.origin, KeyOrigin::Keystore { path } if path.starts_with(&ks_dir)),
            || format!("origin {:?}", k.origin),
        )?;
    }
    let mut failed: Vec<_> = report
        .errors
        .iter()
        .map(|(p, _)| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    failed.sort();
    ensure(
        failed == ["corrupt.json", "nopassword.json", "wrongpw.json"],
        || format!("errors {:?}", report.errors),
    )?;
    for (path, msg) in &report.errors {
        ensure(msg.contains(&path.display().to_string()), || {
            format!("{msg} lacks its file")
        })?;
        ensure(
            !msg.contains(DEV_PASSWORD) && !msg.contains("not the password"),
            || format!("secret in {msg}"),
        )?;
    }
    let wrong = report
        .errors
        .iter()
        .find(|(p, _)| p.ends_with("wrongpw.json"))
        .ok_or("wrongpw")?;
    ensure(wrong.1.contains("wrong password"), || wrong.1.clone())?;
    ensure(report.keys_per_second() > 0.0, || "rate".into())?;

    let store = KeyStore::new();
    ensure(store.insert_all(report.keys) == 3, || "insert_all".into())?;
    ensure(store.get(&want[0]).is_some(), || "get".into())
}

/// A keystore whose `pubkey` field names another key (the password is right) fails to load with
/// a message saying exactly that, naming both public keys, not as a password or decryption
/// failure.
fn forged_pubkey_is_named() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (ks_dir, pw_dir) = (tmp.path().join("keystores"), tmp.path().join("passwords"));
    std::fs::create_dir_all(&ks_dir)?;
    std::fs::create_dir_all(&pw_dir)?;
    let (secret, claimed) = (SecretKey::random(), SecretKey::random());
    write_keystore(&ks_dir, "forged.json", &secret, DEV_PASSWORD);
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(ks_dir.join("forged.json"))?)?;
    doc["pubkey"] = Value::String(hex::encode(claimed.public_key().bytes().0));
    std::fs::write(ks_dir.join("forged.json"), doc.to_string())?;
    std::fs::write(pw_dir.join("forged.txt"), DEV_PASSWORD)?;

    let report = load_keystores_dir(&ks_dir, &pw_dir)?;
    ensure(report.keys.is_empty(), || "a forged keystore loaded".into())?;
    let [(path, msg)] = report.errors.as_slice() else {
        return Err(format!("errors {:?}", report.errors).into());
    };
    ensure(path.ends_with("forged.json"), || path.display().to_string())?;
    let want = format!(
        "keystore pubkey field {} does not match its secret key (public key {})",
        claimed.public_key().bytes(),
        secret.public_key().bytes()
    );
    ensure(msg.contains(&want), || format!("{msg} lacks {want}"))?;
    ensure(
        !msg.contains("password") && !msg.contains("decrypt"),
        || msg.clone(),
    )
}

fn key_config_dir() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    std::fs::create_dir(dir.join("ks"))?;
    let raw = interop_secret_key(1);
    let raw_hex = hex::encode(raw.expose_secret().as_ref());
    let in_keystore = SecretKey::random();
    let multi = [SecretKey::random(), SecretKey::random()];
    write_keystore(&dir.join("ks"), "a.json", &in_keystore, DEV_PASSWORD);
    write_keystore(&dir.join("ks"), "m.json", &multi[1], DEV_PASSWORD);
    std::fs::write(dir.join("ks/a.pass"), DEV_PASSWORD)?;
    std::fs::write(dir.join("ks/empty.pass"), "\n")?;
    let multi0 = hex::encode(multi[0].expose_secret().as_ref());

    std::fs::write(
        dir.join("raw.yaml"),
        format!("type: \"file-raw\"\nkeyType: \"BLS\"\nprivateKey: \"0x{raw_hex}\"\n"),
    )?;
    std::fs::write(
        dir.join("keystore.yaml"),
        "type: file-keystore\nkeystoreFile: ks/a.json\nkeystorePasswordFile: ks/a.pass\n",
    )?;
    std::fs::write(
        dir.join("multi.yml"),
        format!(
            "type: file-raw\nprivateKey: \"{multi0}\"\n---\ntype: file-keystore\n\
             keystoreFile: ks/m.json\nkeystorePasswordFile: ks/a.pass\n"
        ),
    )?;
    std::fs::write(
        dir.join("vault.yaml"),
        "type: azure-secret\nvaultName: v\nsecretName: k\nclientSecret: s3cr3t-token\n",
    )?;
    std::fs::write(
        dir.join("emptypw.yaml"),
        "type: file-keystore\nkeystoreFile: ks/m.json\nkeystorePasswordFile: ks/empty.pass\n",
    )?;
    std::fs::write(
        dir.join("badraw.yaml"),
        "type: file-raw\nprivateKey: \"0xdeadbeefcafe\"\n",
    )?;
    std::fs::write(dir.join("README.txt"), "type: hashicorp\n")?;

    let report = load_key_config_dir(dir)?;
    let mut loaded: Vec<_> = report
        .keys
        .iter()
        .map(|k| k.secret.public_key().bytes())
        .collect();
    let mut want = vec![
        raw.public_key().bytes(),
        in_keystore.public_key().bytes(),
        multi[0].public_key().bytes(),
        multi[1].public_key().bytes(),
    ];
    loaded.sort();
    want.sort();
    ensure(loaded == want, || {
        format!("loaded {loaded:?}, errors {:?}", report.errors)
    })?;
    let multi_origins = report
        .keys
        .iter()
        .filter(
            |k| matches!(&k.origin, KeyOrigin::KeyConfig { path } if path.ends_with("multi.yml")),
        )
        .count();
    ensure(multi_origins == 2, || {
        "multi.yml should give two keys".into()
    })?;

    let mut failed: Vec<_> = report
        .errors
        .iter()
        .map(|(p, m)| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                m.clone(),
            )
        })
        .collect();
    failed.sort();
    let names: Vec<&str> = failed.iter().map(|(n, _)| n.as_str()).collect();
    ensure(
        names == ["badraw.yaml", "emptypw.yaml", "vault.yaml"],
        || format!("{failed:?}"),
    )?;
    ensure(
        failed[2].1.contains("vault.yaml")
            && failed[2].1.contains("\"azure-secret\" not supported yet"),
        || failed[2].1.clone(),
    )?;
    ensure(failed[1].1.contains("empty"), || failed[1].1.clone())?;
    for (_, msg) in &failed {
        ensure(
            !msg.contains("s3cr3t") && !msg.contains("deadbeef") && !msg.contains(DEV_PASSWORD),
            || format!("secret in {msg}"),
        )?;
    }
    Ok(())
}

/// `keystores/dev/interop-<i>.json` decrypts (with `passwords/interop-<i>.txt`) to interop key i.
fn dev_keystores() -> TestResult {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("keystores/dev");
    let report = load_keystores_dir(&root, &root.join("passwords"))?;
    ensure(report.errors.is_empty(), || format!("{:?}", report.errors))?;
    ensure(report.keys.len() == 5, || {
        format!("{} keys", report.keys.len())
    })?;
    for key in &report.keys {
        let KeyOrigin::Keystore { path } = &key.origin else {
            return Err("origin".into());
        };
        let stem = path.file_stem().and_then(|s| s.to_str()).ok_or("name")?;
        let index: u64 = stem.strip_prefix("interop-").ok_or("prefix")?.parse()?;
        let want = interop_secret_key(index);
        ensure(key.secret.expose_secret() == want.expose_secret(), || {
            format!("{stem} differs")
        })?;
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for dir in ["eip2335", "eip2335-low-cost"] {
        for (name, path) in files_in(dir) {
            trials.push(Trial::test(name.clone(), move || {
                official_keystore(&name, &path)
            }));
        }
    }
    for (name, path) in files_in("invalid") {
        trials.push(Trial::test(name.clone(), move || {
            invalid_keystore(&name, &path)
        }));
    }
    for (name, path) in files_in("valid-variants") {
        trials.push(Trial::test(name, move || valid_variant(&path)));
    }
    let cases = read_json(&vectors().join("password_normalisation.json"));
    for (i, case) in cases["cases"].as_array().expect("cases").iter().enumerate() {
        let case = case.clone();
        trials.push(Trial::test(
            format!("password_normalisation/case_{i:02}"),
            move || normalisation_case(&case),
        ));
    }
    trials.push(Trial::test(
        "crypto/nested_unknown_field_refused",
        nested_unknown_field_refused,
    ));
    trials.push(Trial::test("round_trip/scrypt_n1024", || {
        round_trip(KdfParams::Scrypt {
            n: 1024,
            r: 8,
            p: 1,
        })
    }));
    trials.push(Trial::test("round_trip/pbkdf2_c1024", || {
        round_trip(KdfParams::Pbkdf2 { c: 1024 })
    }));
    trials.push(Trial::test(
        "load/keystores_dir_partial_failures",
        keystores_dir_partial_failures,
    ));
    trials.push(Trial::test("load/key_config_dir", key_config_dir));
    trials.push(Trial::test(
        "load/forged_pubkey_is_named",
        forged_pubkey_is_named,
    ));
    trials.push(Trial::test("load/dev_keystores", dev_keystores));
    libtest_mimic::run(&args, trials).exit();
}
