"""GET a coaps:// URI with aiocoap (DTLSSocket, PSK) and print the response.

Usage: aiocoap_get.py URI IDENTITY KEY [SZX [ACCEPT]]
With SZX (0-6; "-" for none), asks for the response in Block2 blocks of
2**(SZX+4) bytes from the start (RFC 7959 early negotiation); aiocoap fetches
the rest and reassembles them. ACCEPT is a content-format number. Prints "CODE PAYLOAD" on success; exits 2 with the error
on failure.
"""
import asyncio
import sys

import aiocoap
from aiocoap.optiontypes import BlockOption


async def main(uri, identity, key, szx=None, accept=None):
    ctx = await aiocoap.Context.create_client_context()
    ctx.client_credentials.load_from_dict({
        uri: {"dtls": {"psk": {"ascii": key}, "client-identity": {"ascii": identity}}}
    })
    try:
        req = aiocoap.Message(code=aiocoap.GET, uri=uri)
        if szx not in (None, "-"):
            req.opt.block2 = BlockOption.BlockwiseTuple(0, False, int(szx))
        if accept is not None:
            req.opt.accept = int(accept)
        resp = await asyncio.wait_for(ctx.request(req).response, 20)
        print(resp.code, resp.payload.decode(errors="replace"))
    finally:
        await ctx.shutdown()


if __name__ == "__main__":
    try:
        asyncio.run(main(*sys.argv[1:6]))
    except Exception as e:  # the test asserts on output, not on exit codes alone
        print("ERROR", type(e).__name__, e)
        sys.exit(2)
