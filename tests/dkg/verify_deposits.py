#!/usr/bin/env python3
"""Independent check of a deposit_data-*.json file: hand-written SSZ merkleization and py_ecc
BLS verification (no dvsigner code). Usage: verify_deposits.py FILE [EXPECTED_PUBKEY_HEX...]
Exit 0 when every entry verifies, 1 otherwise."""
import hashlib
import json
import sys

from py_ecc.bls import G2ProofOfPossession as bls

DOMAIN_DEPOSIT = bytes.fromhex("03000000")


def h(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(a + b).digest()


def chunk(b: bytes) -> bytes:
    return b + b"\x00" * (32 - len(b))


def bytes48_root(b: bytes) -> bytes:
    return h(b[:32], chunk(b[32:]))


def bytes96_root(b: bytes) -> bytes:
    return h(h(b[:32], b[32:64]), h(b[64:], b"\x00" * 32))


def main() -> int:
    entries = json.load(open(sys.argv[1]))
    expected = set(sys.argv[2:])
    ok = True
    seen = set()
    for e in entries:
        pk = bytes.fromhex(e["pubkey"])
        wc = bytes.fromhex(e["withdrawal_credentials"])
        amount = chunk(int(e["amount"]).to_bytes(8, "little"))
        sig = bytes.fromhex(e["signature"])
        fv = bytes.fromhex(e["fork_version"])
        msg_root = h(h(bytes48_root(pk), wc), h(amount, b"\x00" * 32))
        data_root = h(h(bytes48_root(pk), wc), h(amount, bytes96_root(sig)))
        fork_data_root = h(chunk(fv), b"\x00" * 32)
        domain = DOMAIN_DEPOSIT + fork_data_root[:28]
        signing_root = h(msg_root, domain)
        checks = {
            "deposit_message_root": msg_root.hex() == e["deposit_message_root"],
            "deposit_data_root": data_root.hex() == e["deposit_data_root"],
            "signature": bls.Verify(pk, signing_root, sig),
        }
        for name, good in checks.items():
            if not good:
                print(f"{e['pubkey']}: {name} FAILED")
                ok = False
        seen.add(e["pubkey"])
    if expected and seen != expected:
        print(f"pubkeys {sorted(seen)} != expected {sorted(expected)}")
        ok = False
    print("OK" if ok else "FAILED", len(entries), "entries")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
