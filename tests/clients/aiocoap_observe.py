"""Observe a coaps:// resource with aiocoap (DTLSSocket, PSK) and print each
notification as it arrives: "<unix time> <payload>", flushed.

Usage: aiocoap_observe.py URI IDENTITY KEY SECONDS [ACCEPT]
Stops after SECONDS; exits 2 with the error on failure.
"""
import asyncio
import sys
import time

import aiocoap


async def main(uri, identity, key, seconds, accept="0"):
    ctx = await aiocoap.Context.create_client_context()
    ctx.client_credentials.load_from_dict({
        uri: {"dtls": {"psk": {"ascii": key}, "client-identity": {"ascii": identity}}}
    })
    try:
        req = aiocoap.Message(code=aiocoap.GET, uri=uri, observe=0)
        req.opt.accept = int(accept)
        pr = ctx.request(req)
        first = await asyncio.wait_for(pr.response, 20)
        print(f"{time.time():.6f} {first.payload.decode(errors='replace')}", flush=True)

        async def follow():
            async for n in pr.observation:
                print(f"{time.time():.6f} {n.payload.decode(errors='replace')}", flush=True)

        try:
            await asyncio.wait_for(follow(), float(seconds))
        except asyncio.TimeoutError:
            pass
        pr.observation.cancel()
    finally:
        await ctx.shutdown()


if __name__ == "__main__":
    try:
        asyncio.run(main(*sys.argv[1:6]))
    except Exception as e:
        print("ERROR", type(e).__name__, e, flush=True)
        sys.exit(2)
