#!/usr/bin/env python3
"""A receiver of enroll's outbound events that verifies every signature with the Standard
Webhooks reference library (PyPI `standardwebhooks`), an implementation independent of enroll.

    outbound_receiver.py --secret whsec_... --record attempts.jsonl [--answers 500,200] [--port 0]

It answers the statuses of --answers in turn, one per delivery attempt (then 200 for every
later one), and appends one JSON line per attempt to --record: the webhook-id, whether the
signature verified, the status it answered and the parsed body. The first line on stdout is
{"port": N}, so a test can start it on port 0.
"""
import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--secret", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--answers", default="")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    webhook = Webhook(args.secret)
    answers = [int(a) for a in args.answers.split(",") if a.strip()]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                payload = webhook.verify(body, headers)
                verified = True
            except (WebhookVerificationError, ValueError) as e:
                payload, verified = {"error": str(e)}, False
            with lock:
                status = answers.pop(0) if answers else 200
                if not verified:
                    status = 401
                line = {
                    "webhook_id": headers.get("webhook-id"),
                    "verified": verified,
                    "status": status,
                    "body": payload,
                }
                with open(args.record, "a") as f:
                    f.write(json.dumps(line) + "\n")
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
