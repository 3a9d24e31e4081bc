"""A client of a Trellis WebSocket stream (the `websockets` library): the station's
`/api/v1/stream` (ws://) or the relay's HQ stream (wss://, trusting --ca).

Prints {"type": "open"}, then every message as one JSON line (with --count, none), then, when
the server closes, {"type": "closed", "code": N, "reason": "...", "messages": N}.
"""
import argparse
import json
import ssl
import sys

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="ws[s]://host:port/api/v1/...stream")
    p.add_argument("--ca", help="the server's CA certificate (PEM), for wss://")
    p.add_argument("--token", required=True)
    p.add_argument("--count", action="store_true",
                   help="print no messages, only their count when the server closes")
    a = p.parse_args()
    tls = ssl.create_default_context(cafile=a.ca) if a.ca else None
    with connect(a.url, ssl=tls, additional_headers={"Authorization": f"Bearer {a.token}"},
                 open_timeout=10) as ws:
        print(json.dumps({"type": "open"}), flush=True)
        received = 0
        try:
            for message in ws:
                received += 1
                if not a.count:
                    print(message, flush=True)
        except ConnectionClosed:
            pass
        print(json.dumps({"type": "closed", "code": ws.close_code, "reason": ws.close_reason,
                          "messages": received}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
