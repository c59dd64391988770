"""Builds and signs a firmware manifest as a vendor would, with an
independent COSE/CBOR stack (cbor2 + cryptography; not idreg's code).

Usage:
  fw_manifest.py KEY.pem VENDOR CLASS VERSION IMAGE OUT.cose [MIN_VERSION]

The manifest is a CBOR map with integer keys (1 vendor, 2 class, 3 version,
4 image size, 5 SHA-256 of the image, 6 minimum installed version) inside a
tagged COSE_Sign1 with ES256 (RFC 9052).
"""
import hashlib
import sys

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def main():
    key_path, vendor, klass, version, image_path, out = sys.argv[1:7]
    minimum = sys.argv[7] if len(sys.argv) > 7 else None
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    with open(image_path, "rb") as f:
        image = f.read()
    doc = {
        1: vendor,
        2: klass,
        3: version,
        4: len(image),
        5: hashlib.sha256(image).digest(),
    }
    if minimum:
        doc[6] = minimum
    payload = cbor2.dumps(doc)
    protected = cbor2.dumps({1: -7})
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
    r, s = decode_dss_signature(key.sign(to_sign, ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    with open(out, "wb") as f:
        f.write(cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature])))


main()
