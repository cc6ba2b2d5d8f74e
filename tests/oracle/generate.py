#!/usr/bin/env python3
"""Independent oracle for dvsigner's signing roots and signatures.

Writes tests/oracle/fixtures.json: for every Web3Signer sign type (and every BLOCK_V2 and
AGGREGATE_AND_PROOF(_V2) fork variant) a request body, the network it assumes (mainnet), the
expected signing root and the expected BLS signature under interop secret key 0. Nothing here
uses dvsigner: SSZ hashing is `remerkleable`, BLS is `py_ecc` (G2 proof-of-possession scheme),
and domains/signing roots follow consensus-specs directly.

This script is NOT run by CI; its output is committed. To re-run it:

    python3 -m venv tests/oracle/.venv
    tests/oracle/.venv/bin/pip install py_ecc remerkleable
    tests/oracle/.venv/bin/python tests/oracle/generate.py

(tested with py_ecc 8.0.0, remerkleable 0.1.28; takes a minute, py_ecc is pure Python).
"""

import hashlib
import json
import os

from py_ecc.bls import G2ProofOfPossession as bls
from py_ecc.optimized_bls12_381 import curve_order
from remerkleable.basic import uint64
from remerkleable.bitfields import Bitlist, Bitvector
from remerkleable.byte_arrays import ByteVector, Bytes4, Bytes32, Bytes48, Bytes96
from remerkleable.complex import Container, List, Vector

# ---------------------------------------------------------------- mainnet constants
SLOTS_PER_EPOCH = 32
GENESIS_FORK_VERSION = "0x00000000"
FORKS = {  # name: (version, epoch), consensus-specs configs/mainnet.yaml
    "PHASE0": ("0x00000000", 0),
    "ALTAIR": ("0x01000000", 74240),
    "BELLATRIX": ("0x02000000", 144896),
    "CAPELLA": ("0x03000000", 194048),
    "DENEB": ("0x04000000", 269568),
    "ELECTRA": ("0x05000000", 364032),
    "FULU": ("0x06000000", 411392),
}
ORDER = list(FORKS)
GVR = "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"  # mainnet

# mainnet preset sizes
MAX_VALIDATORS_PER_COMMITTEE = 2048
MAX_COMMITTEES_PER_SLOT = 64
SYNC_COMMITTEE_SIZE = 512
SYNC_COMMITTEE_SUBNET_COUNT = 4

DOMAIN = {
    "BEACON_PROPOSER": "0x00000000",
    "BEACON_ATTESTER": "0x01000000",
    "RANDAO": "0x02000000",
    "DEPOSIT": "0x03000000",
    "VOLUNTARY_EXIT": "0x04000000",
    "SELECTION_PROOF": "0x05000000",
    "AGGREGATE_AND_PROOF": "0x06000000",
    "SYNC_COMMITTEE": "0x07000000",
    "SYNC_COMMITTEE_SELECTION_PROOF": "0x08000000",
    "CONTRIBUTION_AND_PROOF": "0x09000000",
    "APPLICATION_BUILDER": "0x00000001",
}

# ---------------------------------------------------------------- SSZ containers (consensus-specs)
Bytes20 = ByteVector[20]


class ForkData(Container):
    current_version: Bytes4
    genesis_validators_root: Bytes32


class SigningData(Container):
    object_root: Bytes32
    domain: Bytes32


class Checkpoint(Container):
    epoch: uint64
    root: Bytes32


class AttestationData(Container):
    slot: uint64
    index: uint64
    beacon_block_root: Bytes32
    source: Checkpoint
    target: Checkpoint


class BeaconBlockHeader(Container):
    slot: uint64
    proposer_index: uint64
    parent_root: Bytes32
    state_root: Bytes32
    body_root: Bytes32


class SignedBeaconBlockHeader(Container):
    message: BeaconBlockHeader
    signature: Bytes96


class ProposerSlashing(Container):
    signed_header_1: SignedBeaconBlockHeader
    signed_header_2: SignedBeaconBlockHeader


class IndexedAttestation(Container):
    attesting_indices: List[uint64, MAX_VALIDATORS_PER_COMMITTEE]
    data: AttestationData
    signature: Bytes96


class AttesterSlashing(Container):
    attestation_1: IndexedAttestation
    attestation_2: IndexedAttestation


class Attestation(Container):
    aggregation_bits: Bitlist[MAX_VALIDATORS_PER_COMMITTEE]
    data: AttestationData
    signature: Bytes96


class AttestationElectra(Container):
    aggregation_bits: Bitlist[MAX_VALIDATORS_PER_COMMITTEE * MAX_COMMITTEES_PER_SLOT]
    data: AttestationData
    signature: Bytes96
    committee_bits: Bitvector[MAX_COMMITTEES_PER_SLOT]


class DepositData(Container):
    pubkey: Bytes48
    withdrawal_credentials: Bytes32
    amount: uint64
    signature: Bytes96


class Deposit(Container):
    proof: Vector[Bytes32, 33]
    data: DepositData


class VoluntaryExit(Container):
    epoch: uint64
    validator_index: uint64


class SignedVoluntaryExit(Container):
    message: VoluntaryExit
    signature: Bytes96


class Eth1Data(Container):
    deposit_root: Bytes32
    deposit_count: uint64
    block_hash: Bytes32


class SyncAggregate(Container):
    sync_committee_bits: Bitvector[SYNC_COMMITTEE_SIZE]
    sync_committee_signature: Bytes96


class BeaconBlockBody(Container):
    randao_reveal: Bytes96
    eth1_data: Eth1Data
    graffiti: Bytes32
    proposer_slashings: List[ProposerSlashing, 16]
    attester_slashings: List[AttesterSlashing, 2]
    attestations: List[Attestation, 128]
    deposits: List[Deposit, 16]
    voluntary_exits: List[SignedVoluntaryExit, 16]


class BeaconBlockBodyAltair(Container):
    randao_reveal: Bytes96
    eth1_data: Eth1Data
    graffiti: Bytes32
    proposer_slashings: List[ProposerSlashing, 16]
    attester_slashings: List[AttesterSlashing, 2]
    attestations: List[Attestation, 128]
    deposits: List[Deposit, 16]
    voluntary_exits: List[SignedVoluntaryExit, 16]
    sync_aggregate: SyncAggregate


class BeaconBlock(Container):
    slot: uint64
    proposer_index: uint64
    parent_root: Bytes32
    state_root: Bytes32
    body: BeaconBlockBody


class BeaconBlockAltair(Container):
    slot: uint64
    proposer_index: uint64
    parent_root: Bytes32
    state_root: Bytes32
    body: BeaconBlockBodyAltair


class AggregateAndProof(Container):
    aggregator_index: uint64
    aggregate: Attestation
    selection_proof: Bytes96


class AggregateAndProofElectra(Container):
    aggregator_index: uint64
    aggregate: AttestationElectra
    selection_proof: Bytes96


class DepositMessage(Container):
    pubkey: Bytes48
    withdrawal_credentials: Bytes32
    amount: uint64


class SyncAggregatorSelectionData(Container):
    slot: uint64
    subcommittee_index: uint64


class SyncCommitteeContribution(Container):
    slot: uint64
    beacon_block_root: Bytes32
    subcommittee_index: uint64
    aggregation_bits: Bitvector[SYNC_COMMITTEE_SIZE // SYNC_COMMITTEE_SUBNET_COUNT]
    signature: Bytes96


class ContributionAndProof(Container):
    aggregator_index: uint64
    contribution: SyncCommitteeContribution
    selection_proof: Bytes96


class ValidatorRegistrationV1(Container):
    fee_recipient: Bytes20
    gas_limit: uint64
    timestamp: uint64
    pubkey: Bytes48


# ---------------------------------------------------------------- helpers
def b(h):
    return bytes.fromhex(h[2:] if h.startswith("0x") else h)


def hx(x):
    return "0x" + bytes(x).hex()


def filler(tag, n):
    """Deterministic distinct bytes (sha256 chain), as 0x-hex."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{tag}/{i}".encode()).digest()
        i += 1
    return hx(out[:n])


def compute_domain(domain_type, fork_version, gvr):
    fdr = ForkData(current_version=Bytes4(b(fork_version)), genesis_validators_root=Bytes32(b(gvr))).hash_tree_root()
    return b(domain_type) + bytes(fdr)[:28]


def signing_root(obj_root, domain):
    return bytes(SigningData(object_root=Bytes32(obj_root), domain=Bytes32(domain)).hash_tree_root())


def fork_info(prev, cur, epoch):
    return {
        "fork": {"previous_version": FORKS[prev][0], "current_version": FORKS[cur][0], "epoch": str(epoch)},
        "genesis_validators_root": GVR,
    }


def fork_info_at(name):
    """fork_info as a beacon node reports it while `name` is the current fork."""
    i = ORDER.index(name)
    prev = ORDER[max(i - 1, 0)]
    return fork_info(prev, name, FORKS[name][1])


def domain_from(fi, domain_type, epoch):
    f = fi["fork"]
    version = f["previous_version"] if epoch < int(f["epoch"]) else f["current_version"]
    return compute_domain(DOMAIN[domain_type], version, fi["genesis_validators_root"])


def first_slot(fork, offset=0):
    return FORKS[fork][1] * SLOTS_PER_EPOCH + offset


# ---------------------------------------------------------------- JSON -> SSZ (oracle's own reading)
def ssz_checkpoint(j):
    return Checkpoint(epoch=int(j["epoch"]), root=Bytes32(b(j["root"])))


def ssz_att_data(j):
    return AttestationData(
        slot=int(j["slot"]),
        index=int(j["index"]),
        beacon_block_root=Bytes32(b(j["beacon_block_root"])),
        source=ssz_checkpoint(j["source"]),
        target=ssz_checkpoint(j["target"]),
    )


def ssz_header(j):
    return BeaconBlockHeader(
        slot=int(j["slot"]),
        proposer_index=int(j["proposer_index"]),
        parent_root=Bytes32(b(j["parent_root"])),
        state_root=Bytes32(b(j["state_root"])),
        body_root=Bytes32(b(j["body_root"])),
    )


def ssz_attestation(j):
    return Attestation(
        aggregation_bits=Bitlist[MAX_VALIDATORS_PER_COMMITTEE].decode_bytes(b(j["aggregation_bits"])),
        data=ssz_att_data(j["data"]),
        signature=Bytes96(b(j["signature"])),
    )


def ssz_attestation_electra(j):
    return AttestationElectra(
        aggregation_bits=Bitlist[MAX_VALIDATORS_PER_COMMITTEE * MAX_COMMITTEES_PER_SLOT].decode_bytes(
            b(j["aggregation_bits"])
        ),
        data=ssz_att_data(j["data"]),
        signature=Bytes96(b(j["signature"])),
        committee_bits=Bitvector[MAX_COMMITTEES_PER_SLOT].decode_bytes(b(j["committee_bits"])),
    )


def ssz_indexed(j):
    return IndexedAttestation(
        attesting_indices=[int(i) for i in j["attesting_indices"]],
        data=ssz_att_data(j["data"]),
        signature=Bytes96(b(j["signature"])),
    )


def ssz_body_fields(j):
    return dict(
        randao_reveal=Bytes96(b(j["randao_reveal"])),
        eth1_data=Eth1Data(
            deposit_root=Bytes32(b(j["eth1_data"]["deposit_root"])),
            deposit_count=int(j["eth1_data"]["deposit_count"]),
            block_hash=Bytes32(b(j["eth1_data"]["block_hash"])),
        ),
        graffiti=Bytes32(b(j["graffiti"])),
        proposer_slashings=[
            ProposerSlashing(
                signed_header_1=SignedBeaconBlockHeader(
                    message=ssz_header(p["signed_header_1"]["message"]),
                    signature=Bytes96(b(p["signed_header_1"]["signature"])),
                ),
                signed_header_2=SignedBeaconBlockHeader(
                    message=ssz_header(p["signed_header_2"]["message"]),
                    signature=Bytes96(b(p["signed_header_2"]["signature"])),
                ),
            )
            for p in j["proposer_slashings"]
        ],
        attester_slashings=[
            AttesterSlashing(attestation_1=ssz_indexed(a["attestation_1"]), attestation_2=ssz_indexed(a["attestation_2"]))
            for a in j["attester_slashings"]
        ],
        attestations=[ssz_attestation(a) for a in j["attestations"]],
        deposits=[
            Deposit(
                proof=[Bytes32(b(p)) for p in d["proof"]],
                data=DepositData(
                    pubkey=Bytes48(b(d["data"]["pubkey"])),
                    withdrawal_credentials=Bytes32(b(d["data"]["withdrawal_credentials"])),
                    amount=int(d["data"]["amount"]),
                    signature=Bytes96(b(d["data"]["signature"])),
                ),
            )
            for d in j["deposits"]
        ],
        voluntary_exits=[
            SignedVoluntaryExit(
                message=VoluntaryExit(epoch=int(e["message"]["epoch"]), validator_index=int(e["message"]["validator_index"])),
                signature=Bytes96(b(e["signature"])),
            )
            for e in j["voluntary_exits"]
        ],
    )


def ssz_block(j, altair):
    common = dict(
        slot=int(j["slot"]),
        proposer_index=int(j["proposer_index"]),
        parent_root=Bytes32(b(j["parent_root"])),
        state_root=Bytes32(b(j["state_root"])),
    )
    fields = ssz_body_fields(j["body"])
    if altair:
        sa = j["body"]["sync_aggregate"]
        fields["sync_aggregate"] = SyncAggregate(
            sync_committee_bits=Bitvector[SYNC_COMMITTEE_SIZE].decode_bytes(b(sa["sync_committee_bits"])),
            sync_committee_signature=Bytes96(b(sa["sync_committee_signature"])),
        )
        return BeaconBlockAltair(body=BeaconBlockBodyAltair(**fields), **common)
    return BeaconBlock(body=BeaconBlockBody(**fields), **common)


# ---------------------------------------------------------------- JSON payload builders
def att_data_json(slot, index, source_epoch, target_epoch, tag):
    return {
        "slot": str(slot),
        "index": str(index),
        "beacon_block_root": filler(tag + "/bbr", 32),
        "source": {"epoch": str(source_epoch), "root": filler(tag + "/src", 32)},
        "target": {"epoch": str(target_epoch), "root": filler(tag + "/tgt", 32)},
    }


def bits_hex(kind, bits):
    return hx(kind(bits).encode_bytes())


def header_json(slot, tag):
    return {
        "slot": str(slot),
        "proposer_index": "4242",
        "parent_root": filler(tag + "/parent", 32),
        "state_root": filler(tag + "/state", 32),
        "body_root": filler(tag + "/body", 32),
    }


def block_json(slot, tag, altair):
    epoch = slot // SLOTS_PER_EPOCH
    body = {
        "randao_reveal": filler(tag + "/randao", 96),
        "eth1_data": {
            "deposit_root": filler(tag + "/dr", 32),
            "deposit_count": "123456",
            "block_hash": filler(tag + "/bh", 32),
        },
        "graffiti": filler(tag + "/graffiti", 32),
        "proposer_slashings": [
            {
                "signed_header_1": {"message": header_json(slot - 40, tag + "/ps1"), "signature": filler(tag + "/ps1s", 96)},
                "signed_header_2": {"message": header_json(slot - 40, tag + "/ps2"), "signature": filler(tag + "/ps2s", 96)},
            }
        ],
        "attester_slashings": [
            {
                "attestation_1": {
                    "attesting_indices": ["1", "5", "77"],
                    "data": att_data_json(slot - 64, 2, epoch - 4, epoch - 2, tag + "/as1"),
                    "signature": filler(tag + "/as1s", 96),
                },
                "attestation_2": {
                    "attesting_indices": ["5", "9"],
                    "data": att_data_json(slot - 64, 2, epoch - 3, epoch - 2, tag + "/as2"),
                    "signature": filler(tag + "/as2s", 96),
                },
            }
        ],
        "attestations": [
            {
                "aggregation_bits": bits_hex(
                    Bitlist[MAX_VALIDATORS_PER_COMMITTEE], [i % 3 == 0 for i in range(130)]
                ),
                "data": att_data_json(slot - 1, i, epoch - 1, epoch, tag + f"/att{i}"),
                "signature": filler(tag + f"/att{i}s", 96),
            }
            for i in range(2)
        ],
        "deposits": [
            {
                "proof": [filler(tag + f"/proof{i}", 32) for i in range(33)],
                "data": {
                    "pubkey": filler(tag + "/dpk", 48),
                    "withdrawal_credentials": filler(tag + "/dwc", 32),
                    "amount": "32000000000",
                    "signature": filler(tag + "/dsig", 96),
                },
            }
        ],
        "voluntary_exits": [
            {"message": {"epoch": str(epoch - 10), "validator_index": "31337"}, "signature": filler(tag + "/exs", 96)}
        ],
    }
    if altair:
        body["sync_aggregate"] = {
            "sync_committee_bits": bits_hex(Bitvector[SYNC_COMMITTEE_SIZE], [i % 5 != 1 for i in range(SYNC_COMMITTEE_SIZE)]),
            "sync_committee_signature": filler(tag + "/syncsig", 96),
        }
    return {
        "slot": str(slot),
        "proposer_index": "1999",
        "parent_root": filler(tag + "/parent", 32),
        "state_root": filler(tag + "/state", 32),
        "body": body,
    }


def aggregate_json(slot, electra, tag):
    epoch = slot // SLOTS_PER_EPOCH
    if electra:
        n = MAX_VALIDATORS_PER_COMMITTEE * MAX_COMMITTEES_PER_SLOT
        bits = bits_hex(Bitlist[n], [i % 7 == 0 for i in range(600)])
    else:
        bits = bits_hex(Bitlist[MAX_VALIDATORS_PER_COMMITTEE], [i % 7 == 0 for i in range(300)])
    agg = {
        "aggregation_bits": bits,
        "data": att_data_json(slot, 0 if electra else 5, epoch - 1, epoch, tag),
        "signature": filler(tag + "/aggsig", 96),
    }
    if electra:
        agg["committee_bits"] = bits_hex(Bitvector[MAX_COMMITTEES_PER_SLOT], [i in (3, 17, 63) for i in range(64)])
    return {"aggregator_index": "777", "aggregate": agg, "selection_proof": filler(tag + "/selproof", 96)}


def ssz_aggregate(j, electra):
    agg = ssz_attestation_electra(j["aggregate"]) if electra else ssz_attestation(j["aggregate"])
    cls = AggregateAndProofElectra if electra else AggregateAndProof
    return cls(aggregator_index=int(j["aggregator_index"]), aggregate=agg, selection_proof=Bytes96(b(j["selection_proof"])))


# ---------------------------------------------------------------- cases
def cases():
    out = []

    def add(name, body, root, note):
        out.append({"name": name, "network": "mainnet", "request": body, "signing_root": hx(root), "note": note})

    # BLOCK (legacy phase0) and BLOCK_V2 PHASE0: a full phase0 block with every list non-empty.
    slot = 1000
    blk = block_json(slot, "phase0", altair=False)
    fi = fork_info("PHASE0", "PHASE0", 0)
    root = signing_root(
        bytes(ssz_block(blk, False).hash_tree_root()), domain_from(fi, "BEACON_PROPOSER", slot // SLOTS_PER_EPOCH)
    )
    add("block_phase0_legacy", {"type": "BLOCK", "fork_info": fi, "block": blk}, root, "legacy BLOCK, full phase0 block")
    add(
        "block_v2_phase0",
        {"type": "BLOCK_V2", "fork_info": fi, "beacon_block": {"version": "PHASE0", "block": blk}},
        root,
        "BLOCK_V2 PHASE0 full block",
    )

    # BLOCK_V2 ALTAIR full block with sync_aggregate.
    slot = first_slot("ALTAIR", 9)
    blk = block_json(slot, "altair", altair=True)
    fi = fork_info_at("ALTAIR")
    root = signing_root(
        bytes(ssz_block(blk, True).hash_tree_root()), domain_from(fi, "BEACON_PROPOSER", slot // SLOTS_PER_EPOCH)
    )
    add(
        "block_v2_altair",
        {"type": "BLOCK_V2", "fork_info": fi, "beacon_block": {"version": "ALTAIR", "block": blk}},
        root,
        "BLOCK_V2 ALTAIR full block with sync_aggregate",
    )

    # BLOCK_V2 headers.
    for fork in ["BELLATRIX", "CAPELLA", "DENEB", "ELECTRA", "FULU"]:
        slot = first_slot(fork, 17)
        h = header_json(slot, fork.lower())
        fi = fork_info_at(fork)
        root = signing_root(bytes(ssz_header(h).hash_tree_root()), domain_from(fi, "BEACON_PROPOSER", slot // SLOTS_PER_EPOCH))
        add(
            f"block_v2_{fork.lower()}",
            {"type": "BLOCK_V2", "fork_info": fi, "beacon_block": {"version": fork, "block_header": h}},
            root,
            f"BLOCK_V2 {fork} block_header",
        )

    # ATTESTATION (Electra era), and one whose target is before fork.epoch (previous version).
    fi = fork_info_at("ELECTRA")
    target = FORKS["ELECTRA"][1] + 5
    a = att_data_json(target * SLOTS_PER_EPOCH + 3, 11, target - 1, target, "att")
    root = signing_root(bytes(ssz_att_data(a).hash_tree_root()), domain_from(fi, "BEACON_ATTESTER", target))
    add("attestation", {"type": "ATTESTATION", "fork_info": fi, "attestation": a}, root, "domain epoch = target epoch")
    target = FORKS["ELECTRA"][1] - 1
    a = att_data_json(target * SLOTS_PER_EPOCH + 31, 2, target - 1, target, "att-prev")
    root = signing_root(bytes(ssz_att_data(a).hash_tree_root()), domain_from(fi, "BEACON_ATTESTER", target))
    add(
        "attestation_previous_fork",
        {"type": "ATTESTATION", "fork_info": fi, "attestation": a},
        root,
        "target epoch < fork.epoch: previous_version",
    )

    # AGGREGATION_SLOT
    fi = fork_info_at("FULU")
    slot = first_slot("FULU", 123)
    root = signing_root(bytes(uint64(slot).hash_tree_root()), domain_from(fi, "SELECTION_PROOF", slot // SLOTS_PER_EPOCH))
    add("aggregation_slot", {"type": "AGGREGATION_SLOT", "fork_info": fi, "aggregation_slot": {"slot": str(slot)}}, root, "")

    # AGGREGATE_AND_PROOF v1 (phase0 shape and Electra shape) and V2 variants.
    for fork, electra in [("DENEB", False), ("ELECTRA", True)]:
        fi = fork_info_at(fork)
        slot = first_slot(fork, 45)
        j = aggregate_json(slot, electra, "agg-" + fork.lower())
        root = signing_root(
            bytes(ssz_aggregate(j, electra).hash_tree_root()),
            domain_from(fi, "AGGREGATE_AND_PROOF", slot // SLOTS_PER_EPOCH),
        )
        shape = "electra" if electra else "phase0"
        add(
            f"aggregate_and_proof_v1_{shape}",
            {"type": "AGGREGATE_AND_PROOF", "fork_info": fi, "aggregate_and_proof": j},
            root,
            f"v1 with a {shape}-shaped aggregate",
        )
    for fork in ORDER:
        electra = fork in ("ELECTRA", "FULU")
        fi = fork_info_at(fork)
        slot = first_slot(fork, 50)
        j = aggregate_json(slot, electra, "aggv2-" + fork.lower())
        root = signing_root(
            bytes(ssz_aggregate(j, electra).hash_tree_root()),
            domain_from(fi, "AGGREGATE_AND_PROOF", slot // SLOTS_PER_EPOCH),
        )
        add(
            f"aggregate_and_proof_v2_{fork.lower()}",
            {"type": "AGGREGATE_AND_PROOF_V2", "fork_info": fi, "aggregate_and_proof": {"version": fork, "data": j}},
            root,
            "V2",
        )

    # DEPOSIT: compute_domain(DEPOSIT, request genesis_fork_version, zero root); no fork_info.
    d = {
        "pubkey": filler("dep/pk", 48),
        "withdrawal_credentials": "0x01" + "00" * 11 + filler("dep/addr", 20)[2:],
        "amount": "32000000000",
        "genesis_fork_version": GENESIS_FORK_VERSION,
    }
    msg = DepositMessage(pubkey=Bytes48(b(d["pubkey"])), withdrawal_credentials=Bytes32(b(d["withdrawal_credentials"])), amount=int(d["amount"]))
    root = signing_root(bytes(msg.hash_tree_root()), compute_domain(DOMAIN["DEPOSIT"], d["genesis_fork_version"], "0x" + "00" * 32))
    add("deposit", {"type": "DEPOSIT", "deposit": d}, root, "zero GVR, no fork_info")

    # RANDAO_REVEAL
    fi = fork_info_at("DENEB")
    epoch = FORKS["DENEB"][1] + 77
    root = signing_root(bytes(uint64(epoch).hash_tree_root()), domain_from(fi, "RANDAO", epoch))
    add("randao_reveal", {"type": "RANDAO_REVEAL", "fork_info": fi, "randao_reveal": {"epoch": str(epoch)}}, root, "")

    # VOLUNTARY_EXIT before Deneb (fork_info decides) and after (EIP-7044: Capella version).
    fi = fork_info_at("CAPELLA")
    epoch = FORKS["CAPELLA"][1] + 1000
    ex = {"epoch": str(epoch), "validator_index": "424242"}
    ex_root = bytes(VoluntaryExit(epoch=epoch, validator_index=424242).hash_tree_root())
    add(
        "voluntary_exit_pre_deneb",
        {"type": "VOLUNTARY_EXIT", "fork_info": fi, "voluntary_exit": ex},
        signing_root(ex_root, domain_from(fi, "VOLUNTARY_EXIT", epoch)),
        "before DENEB_FORK_EPOCH: fork_info decides",
    )
    fi = fork_info_at("ELECTRA")
    epoch = FORKS["ELECTRA"][1] + 10
    ex = {"epoch": str(epoch), "validator_index": "424242"}
    ex_root = bytes(VoluntaryExit(epoch=epoch, validator_index=424242).hash_tree_root())
    add(
        "voluntary_exit_post_deneb",
        {"type": "VOLUNTARY_EXIT", "fork_info": fi, "voluntary_exit": ex},
        signing_root(ex_root, compute_domain(DOMAIN["VOLUNTARY_EXIT"], FORKS["CAPELLA"][0], GVR)),
        "EIP-7044: CAPELLA_FORK_VERSION whatever fork_info says",
    )

    # SYNC_COMMITTEE_MESSAGE
    fi = fork_info_at("FULU")
    slot = first_slot("FULU", 7)
    bbr = filler("sync/bbr", 32)
    add(
        "sync_committee_message",
        {"type": "SYNC_COMMITTEE_MESSAGE", "fork_info": fi, "sync_committee_message": {"beacon_block_root": bbr, "slot": str(slot)}},
        signing_root(b(bbr), domain_from(fi, "SYNC_COMMITTEE", slot // SLOTS_PER_EPOCH)),
        "object root = beacon_block_root",
    )

    # SYNC_COMMITTEE_SELECTION_PROOF
    sel = {"slot": str(slot), "subcommittee_index": "3"}
    obj = SyncAggregatorSelectionData(slot=slot, subcommittee_index=3)
    add(
        "sync_committee_selection_proof",
        {"type": "SYNC_COMMITTEE_SELECTION_PROOF", "fork_info": fi, "sync_aggregator_selection_data": sel},
        signing_root(bytes(obj.hash_tree_root()), domain_from(fi, "SYNC_COMMITTEE_SELECTION_PROOF", slot // SLOTS_PER_EPOCH)),
        "",
    )

    # SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF (Bitvector[128] on mainnet)
    sub = SYNC_COMMITTEE_SIZE // SYNC_COMMITTEE_SUBNET_COUNT
    c = {
        "aggregator_index": "1234",
        "selection_proof": filler("contrib/sel", 96),
        "contribution": {
            "slot": str(slot),
            "beacon_block_root": bbr,
            "subcommittee_index": "2",
            "aggregation_bits": bits_hex(Bitvector[sub], [i % 3 == 1 for i in range(sub)]),
            "signature": filler("contrib/sig", 96),
        },
    }
    cc = c["contribution"]
    obj = ContributionAndProof(
        aggregator_index=int(c["aggregator_index"]),
        contribution=SyncCommitteeContribution(
            slot=int(cc["slot"]),
            beacon_block_root=Bytes32(b(cc["beacon_block_root"])),
            subcommittee_index=int(cc["subcommittee_index"]),
            aggregation_bits=Bitvector[sub].decode_bytes(b(cc["aggregation_bits"])),
            signature=Bytes96(b(cc["signature"])),
        ),
        selection_proof=Bytes96(b(c["selection_proof"])),
    )
    add(
        "sync_committee_contribution_and_proof",
        {"type": "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF", "fork_info": fi, "contribution_and_proof": c},
        signing_root(bytes(obj.hash_tree_root()), domain_from(fi, "CONTRIBUTION_AND_PROOF", slot // SLOTS_PER_EPOCH)),
        "mainnet preset: Bitvector[128]",
    )

    # VALIDATOR_REGISTRATION: network GENESIS_FORK_VERSION, zero GVR; fork_info null.
    r = {
        "fee_recipient": filler("reg/fee", 20),
        "gas_limit": "36000000",
        "timestamp": "1750000000",
        "pubkey": filler("reg/pk", 48),
    }
    obj = ValidatorRegistrationV1(
        fee_recipient=Bytes20(b(r["fee_recipient"])),
        gas_limit=int(r["gas_limit"]),
        timestamp=int(r["timestamp"]),
        pubkey=Bytes48(b(r["pubkey"])),
    )
    add(
        "validator_registration",
        {"type": "VALIDATOR_REGISTRATION", "fork_info": None, "validator_registration": r},
        signing_root(bytes(obj.hash_tree_root()), compute_domain(DOMAIN["APPLICATION_BUILDER"], GENESIS_FORK_VERSION, "0x" + "00" * 32)),
        "builder domain",
    )
    return out


def main():
    # Interop secret key 0 (eth2.0-pm interop keygen): little-endian sha256 of 32-byte LE index, mod r.
    sk = int.from_bytes(hashlib.sha256((0).to_bytes(32, "little")).digest(), "little") % curve_order
    pk = bls.SkToPk(sk)
    fixtures = []
    for c in cases():
        c["signature"] = hx(bls.Sign(sk, b(c["signing_root"])))
        assert bls.Verify(pk, b(c["signing_root"]), b(c["signature"]))
        fixtures.append(c)
    doc = {
        "description": "Signing roots and signatures computed by tests/oracle/generate.py with remerkleable (SSZ) "
        "and py_ecc (BLS G2 proof-of-possession), independent of dvsigner. Network: mainnet config and preset.",
        "secret_key": hx(sk.to_bytes(32, "big")),
        "public_key": hx(pk),
        "cases": fixtures,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {len(fixtures)} cases to {path}")


if __name__ == "__main__":
    main()
