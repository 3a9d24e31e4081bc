"""A client of a Trellis WebSocket stream (the `websockets` library): the station's
`/api/v1/stream` (ws://) or the relay's HQ stream (wss://, trusting --ca).

Prints {"type": "open"}, then every message as one JSON line (with --count, none), then, when
the server closes, {"type": "closed", "code": N, "reason": "...", "messages": N}.

With --pause-on TYPE it plays a client that falls behind: at the first message of that type
it prints {"type": "paused"} and reads nothing more (the library stops reading the socket
once its small queue is full, so the server's sends back up) until a line arrives on stdin.

The asyncio client, not `websockets.sync`: the sync client reads the socket in a thread of
its own while the caller's thread writes to it, and one OpenSSL connection must not be used
from two threads at once (openssl#20446). Over wss:// with TLS 1.3 the server's session
tickets arrive while the upgrade request is being written, and a few connects in a hundred
lost the request and timed out waiting for the handshake.
"""
import argparse
import asyncio
import json
import ssl
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="ws[s]://host:port/api/v1/...stream")
    p.add_argument("--ca", help="the server's CA certificate (PEM), for wss://")
    p.add_argument("--token", required=True)
    p.add_argument("--count", action="store_true",
                   help="print no messages, only their count when the server closes")
    p.add_argument("--pause-on", help="stop reading at the first message of this type, "
                   "until a line arrives on stdin")
    a = p.parse_args()
    tls = ssl.create_default_context(cafile=a.ca) if a.ca else None
    async with connect(a.url, ssl=tls, additional_headers={"Authorization": f"Bearer {a.token}"},
                       open_timeout=10, max_size=None) as ws:
        print(json.dumps({"type": "open"}), flush=True)
        received = 0
        try:
            async for message in ws:
                received += 1
                if not a.count:
                    print(message, flush=True)
                if a.pause_on and json.loads(message).get("type") == a.pause_on:
                    a.pause_on = None
                    print(json.dumps({"type": "paused"}), flush=True)
                    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        except ConnectionClosed:
            pass
        print(json.dumps({"type": "closed", "code": ws.close_code, "reason": ws.close_reason,
                          "messages": received}), flush=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
