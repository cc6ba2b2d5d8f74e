//! The independent oracle fixtures (py_ecc + remerkleable, `tests/oracle/generate.py`).

use serde_json::Value;

/// The fixture cases in an order a slashing-protected signer can sign one after another with a
/// single key: blocks by slot, attestations by target epoch (a lower epoch after a higher one
/// would correctly be refused as below the low watermark).
pub fn cases_in_signable_order() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle/fixtures.json");
    let fixtures: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixtures")).expect("json");
    let mut cases = fixtures["cases"].as_array().expect("cases").clone();
    let key = |c: &Value| -> u64 {
        let r = &c["request"];
        let num = |v: &Value| v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0u64);
        match r["type"].as_str().unwrap_or("") {
            "BLOCK" => num(&r["block"]["slot"]),
            "BLOCK_V2" => {
                let b = &r["beacon_block"];
                num(&b.get("block").unwrap_or(&b["block_header"])["slot"])
            }
            "ATTESTATION" => num(&r["attestation"]["target"]["epoch"]),
            _ => 0,
        }
    };
    cases.sort_by_key(key);
    cases
}
