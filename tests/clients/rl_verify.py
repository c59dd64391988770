"""Checks idreg's signed revocation lists with an independent COSE/CBOR
stack (cbor2 + cryptography; not idreg's code).

Usage:
  rl_verify.py KEY.pem LIST.cose
      verify, print {"version", "since", "ids", "fingerprints", "psk_hashes"} as JSON
  rl_verify.py KEY.pem FULL1.cose DELTA.cose FULL2.cose
      verify all three and check FULL1 + DELTA == FULL2; print "consistent"
Exits 1 with the reason when a signature or a check fails.
"""
import json
import sys

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def verify(key, path):
    with open(path, "rb") as f:
        msg = cbor2.loads(f.read())
    if not isinstance(msg, cbor2.CBORTag) or msg.tag != 18:
        sys.exit(f"{path}: not a tagged COSE_Sign1")
    protected, _unprotected, payload, signature = msg.value
    if cbor2.loads(protected) != {1: -7}:
        sys.exit(f"{path}: algorithm is not ES256")
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), to_sign, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        sys.exit(f"{path}: signature does not verify")
    doc = cbor2.loads(payload)
    return {
        "version": doc["version"],
        "since": doc.get("since"),
        "issued_at": doc["issued_at"],
        "next_update": doc["next_update"],
        "ids": sorted(e["id"] for e in doc["revoked"]),
        "fingerprints": sorted(fp.hex() for e in doc["revoked"] for fp in e["fingerprints"]),
        "psk_hashes": sorted(h.hex() for e in doc["revoked"] for h in e["psk_identity_sha256"]),
    }


def main(argv):
    with open(argv[1], "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    lists = [verify(key, p) for p in argv[2:]]
    if len(lists) == 1:
        print(json.dumps(lists[0]))
        return
    full1, delta, full2 = lists
    if full1["since"] is not None or full2["since"] is not None:
        sys.exit("a full list carries 'since'")
    if delta["since"] != full1["version"] or delta["version"] != full2["version"]:
        sys.exit(f"delta {delta['since']}..{delta['version']} does not join {full1['version']} to {full2['version']}")
    if sorted(set(full1["ids"]) | set(delta["ids"])) != full2["ids"]:
        sys.exit(f"full {full1['ids']} + delta {delta['ids']} != full {full2['ids']}")
    print("consistent")


if __name__ == "__main__":
    main(sys.argv)
