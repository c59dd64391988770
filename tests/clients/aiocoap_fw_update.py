"""A device updating its firmware over coaps:// with aiocoap (DTLSSocket,
PSK), checking everything itself with cbor2 + cryptography (not idreg's code).

Usage:
  aiocoap_fw_update.py BASE IDENTITY KEY VENDOR_PUB.pem RUNNING PARTIAL [STOP]

1. POST /fw/state: the version it runs (CBOR {1: running}).
2. GET /fw/manifest; verifies the COSE_Sign1 (ES256) with the vendor's key.
   No manifest: prints "NO-MANIFEST CODE" and stops.
3. POST /fw/state: downloading (CBOR {1: running, 2: 1, 3: offered}).
4. GET /fw/image in 1024-byte Block2 blocks, one request per block, from
   where PARTIAL (the bytes of an earlier, interrupted run) ends; each block
   must carry the ETag of the first. With STOP, stops after that many blocks
   of this run, keeps what it has in PARTIAL and prints "INTERRUPTED N".
5. Checks the size and SHA-256 against the manifest: "VERIFIED HEX".
6. POST /fw/state: it runs the new version: "REPORTED CODE".
"""
import asyncio
import hashlib
import os
import sys

import aiocoap
import cbor2
from aiocoap.optiontypes import BlockOption
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

BLOCK_SZX = 6  # 1024 bytes


def verify_manifest(cose, public_pem):
    """The manifest's fields, after checking the vendor's signature."""
    tagged = cbor2.loads(cose)
    assert isinstance(tagged, cbor2.CBORTag) and tagged.tag == 18, "not a COSE_Sign1"
    protected, _unprotected, payload, signature = tagged.value
    assert cbor2.loads(protected) == {1: -7}, "not ES256"
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    key = serialization.load_pem_public_key(public_pem)
    key.verify(encode_dss_signature(r, s), to_sign, ec.ECDSA(hashes.SHA256()))
    return cbor2.loads(payload)


async def main(base, identity, key, vendor_pub, running, partial, stop=None):
    ctx = await aiocoap.Context.create_client_context()
    ctx.client_credentials.load_from_dict({
        base + "/*": {"dtls": {"psk": {"ascii": key}, "client-identity": {"ascii": identity}}}
    })

    async def request(code, path, payload=b"", block=None):
        msg = aiocoap.Message(code=code, uri=base + path, payload=payload)
        if payload:
            msg.opt.content_format = 60
        if block is not None:
            msg.opt.block2 = BlockOption.BlockwiseTuple(block, False, BLOCK_SZX)
        req = ctx.request(msg, handle_blockwise=False)
        return await asyncio.wait_for(req.response, 20)

    try:
        resp = await request(aiocoap.POST, "/fw/state", cbor2.dumps({1: running}))
        assert resp.code == aiocoap.CHANGED, f"report: {resp.code} {resp.payload!r}"
        resp = await request(aiocoap.GET, "/fw/manifest")
        if resp.code != aiocoap.CONTENT:
            print("NO-MANIFEST", resp.code, resp.payload.decode(errors="replace"))
            return
        with open(vendor_pub, "rb") as f:
            manifest = verify_manifest(resp.payload, f.read())
        version, size, digest = manifest[3], manifest[4], manifest[5]
        print("MANIFEST", version, size)
        state = cbor2.dumps({1: running, 2: 1, 3: version})
        resp = await request(aiocoap.POST, "/fw/state", state)
        assert resp.code == aiocoap.CHANGED, f"report: {resp.code}"

        image = b""
        if os.path.exists(partial):
            with open(partial, "rb") as f:
                image = f.read()
        block = len(image) // 1024
        image = image[: block * 1024]
        start = block
        fetched = 0
        etag = None
        while True:
            if stop is not None and fetched == int(stop):
                with open(partial, "wb") as f:
                    f.write(image)
                print("INTERRUPTED", block)
                return
            resp = await request(aiocoap.GET, "/fw/image", block=block)
            assert resp.code == aiocoap.CONTENT, f"block {block}: {resp.code} {resp.payload!r}"
            got = resp.opt.block2
            assert got.block_number == block, f"asked {block}, got {got.block_number}"
            tag = resp.opt.etag
            assert etag is None or tag == etag, "the image changed during the download"
            etag = tag
            image += resp.payload
            block += 1
            fetched += 1
            if not got.more:
                break
        print("RESUMED-AT", start, "FETCHED", fetched)
        assert len(image) == size, f"image is {len(image)} bytes, manifest says {size}"
        sha = hashlib.sha256(image).digest()
        assert sha == digest, "SHA-256 does not match the manifest"
        print("VERIFIED", sha.hex())
        resp = await request(aiocoap.POST, "/fw/state", cbor2.dumps({1: version, 2: 0}))
        print("REPORTED", resp.code)
    finally:
        await ctx.shutdown()


if __name__ == "__main__":
    try:
        asyncio.run(main(*sys.argv[1:8]))
    except Exception as e:  # the test asserts on output, not on exit codes alone
        print("ERROR", type(e).__name__, e)
        sys.exit(2)
