"""An HQ client of the relay's WebSocket stream (the `websockets` library, over TLS).

Prints every message the relay sends as one JSON line, until the connection ends.
"""
import argparse
import json
import ssl
import sys

from websockets.sync.client import connect


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="wss://host:port/api/v1/orgs/ORG/stream")
    p.add_argument("--ca", required=True, help="the relay's CA certificate (PEM)")
    p.add_argument("--token", required=True)
    a = p.parse_args()
    tls = ssl.create_default_context(cafile=a.ca)
    with connect(a.url, ssl=tls, additional_headers={"Authorization": f"Bearer {a.token}"},
                 open_timeout=10) as ws:
        print(json.dumps({"type": "open"}), flush=True)
        for message in ws:
            print(message, flush=True)


if __name__ == "__main__":
    sys.exit(main())
