"""POST a file to a coaps:// URI with aiocoap (DTLSSocket, PSK), block-wise.

Usage: aiocoap_post.py URI IDENTITY KEY FILE CONTENT_FORMAT ACCEPT SZX OUT
The body goes in Block1 blocks of 2**(SZX+4) bytes; aiocoap reassembles a
Block2 response. Prints "CODE LENGTH" and writes the payload to OUT on
success; exits 2 with the error on failure.
"""
import asyncio
import sys
import warnings

import aiocoap
from aiocoap.optiontypes import BlockOption


async def main(uri, identity, key, path, content_format, accept, szx, out):
    ctx = await aiocoap.Context.create_client_context()
    ctx.client_credentials.load_from_dict({
        uri: {"dtls": {"psk": {"ascii": key}, "client-identity": {"ascii": identity}}}
    })
    try:
        with open(path, "rb") as f:
            body = f.read()
        req = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=body)
        req.opt.content_format = int(content_format)
        req.opt.accept = int(accept)
        # The block size hint aiocoap takes from a first Block1 option.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            req.opt.block1 = BlockOption.BlockwiseTuple(0, False, int(szx))
            resp = await asyncio.wait_for(ctx.request(req).response, 30)
        print(resp.code, len(resp.payload))
        if resp.code.is_successful():
            with open(out, "wb") as f:
                f.write(resp.payload)
        else:
            print(resp.payload.decode(errors="replace"))
    finally:
        await ctx.shutdown()


if __name__ == "__main__":
    try:
        asyncio.run(main(*sys.argv[1:9]))
    except Exception as e:  # the test asserts on output, not on exit codes alone
        print("ERROR", type(e).__name__, e)
        sys.exit(2)
