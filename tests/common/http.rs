//! A running node over HTTP: signing checked against the key itself, `/reload`, `/healthcheck`.

use dvsigner::bls::{PublicKey, Signature};
use dvsigner::keys::SecretKey;
use dvsigner::signing::Network;
use serde_json::Value;

use super::process::http_client;

/// Signs a mainnet attestation with target epoch `target` through the node at `base` and checks
/// the answer: 200, a signature that verifies under `sk`'s public key over the root computed
/// here, and equal to signing that root locally (BLS is deterministic).
pub async fn assert_signs(base: &str, sk: &SecretKey, target: u64) {
    let body = super::requests::attestation_body(target);
    let pk = sk.public_key().bytes().to_hex();
    let res = http_client()
        .post(format!("{base}/api/v1/eth2/sign/{pk}"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("sign");
    assert_eq!(res.status(), 200, "sign {pk}");
    let v: Value = res.json().await.expect("json");
    let sig = Signature::from_hex(v["signature"].as_str().expect("signature")).expect("sig hex");
    let network = Network::from_name_or_path("mainnet").expect("mainnet");
    let root = dvsigner::signing::prepare(body.as_bytes(), &network)
        .expect("prepare")
        .root;
    let public = PublicKey::from_bytes(&sk.public_key().bytes().0).expect("pubkey");
    assert!(sig.verify(&public, &root.0), "signature does not verify");
    assert_eq!(sig.to_hex(), sk.sign(&root).to_hex());
}

/// `GET /api/v1/eth2/publicKeys` of the node at `base`, sorted.
pub async fn public_keys(base: &str) -> Vec<String> {
    let mut keys = public_keys_with(&http_client(), base).await;
    keys.sort();
    keys
}

/// `GET /api/v1/eth2/publicKeys` of the node at `base` through `client`, in the node's order.
pub async fn public_keys_with(client: &reqwest::Client, base: &str) -> Vec<String> {
    client
        .get(format!("{base}/api/v1/eth2/publicKeys"))
        .send()
        .await
        .expect("publicKeys")
        .json()
        .await
        .expect("json")
}

/// `POST /reload` on the node at `base`, then polls `GET /reload` (bounded) until it finished:
/// its status (`completed`, `completed_with_errors`, `failed`) and `lastError`.
pub async fn reload(base: &str) -> (String, String) {
    let client = http_client();
    let r = client
        .post(format!("{base}/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 202);
    for _ in 0..400 {
        let v: Value = client
            .get(format!("{base}/reload"))
            .send()
            .await
            .expect("reload status")
            .json()
            .await
            .expect("json");
        match v["status"].as_str() {
            Some("running") => tokio::time::sleep(std::time::Duration::from_millis(25)).await,
            Some(status) => {
                let error = v["lastError"].as_str().unwrap_or_default().to_owned();
                return (status.to_owned(), error);
            }
            None => panic!("reload: {v}"),
        }
    }
    panic!("reload did not complete");
}

/// `GET /healthcheck`: the status code and the document.
pub async fn health(base: &str) -> (u16, Value) {
    let r = http_client()
        .get(format!("{base}/healthcheck"))
        .send()
        .await
        .expect("healthcheck");
    let code = r.status().as_u16();
    (code, r.json().await.expect("json"))
}

/// The check `id` inside a healthcheck document's `keys-check` group (`Null` when absent).
pub fn key_check(health: &Value, id: &str) -> Value {
    health["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["id"] == "keys-check")
        .flat_map(|c| c["checks"].as_array().cloned().unwrap_or_default())
        .find(|c| c["id"] == id)
        .unwrap_or(Value::Null)
}

/// `POST {base}/api/v1/eth2/sign/{pubkey}` with a JSON `body`, asking for JSON: the status and
/// the body text (panics only when `base` cannot be reached).
pub async fn sign_json(
    client: &reqwest::Client,
    base: &str,
    pubkey: &str,
    body: &str,
) -> (u16, String) {
    let r = client
        .post(format!("{base}/api/v1/eth2/sign/{pubkey}"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("reachable");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}
