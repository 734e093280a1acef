"""A loopback webhook receiver for tests (Python's http.server).

    webhook_receiver.py serve --out FILE --fail-first N
        Prints its port on the first line of stdout, then answers every POST: 503 for the first
        N, 204 after. Appends each request to FILE as one JSON line {"status", "headers",
        "body"} (body as text). Listens on 127.0.0.1 only; exits when stdin closes or killed.

    webhook_receiver.py verify --out FILE --secret whsec_...
        Checks the signature of every accepted request in FILE with the `standardwebhooks`
        package (the specification's own library); prints one JSON line per request
        {"id", "seq", "record"} in arrival order, and exits 1 naming the first that fails.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(args):
    lock = threading.Lock()
    seen = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            with lock:
                seen["n"] += 1
                status = 503 if seen["n"] <= args.fail_first else 204
                with open(args.out, "a", encoding="utf-8") as out:
                    out.write(json.dumps({
                        "status": status,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body.decode("utf-8"),
                    }) + "\n")
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()


def verify(args):
    from standardwebhooks.webhooks import Webhook

    hook = Webhook(args.secret)
    with open(args.out, encoding="utf-8") as lines:
        for n, line in enumerate(lines):
            request = json.loads(line)
            if request["status"] >= 300:
                continue
            try:
                payload = hook.verify(request["body"], request["headers"])
            except Exception as e:  # the library's WebhookVerificationError, or a bad body
                print(f"request {n} ({request['headers'].get('webhook-id')}): {e}", file=sys.stderr)
                sys.exit(1)
            print(json.dumps({
                "id": request["headers"]["webhook-id"],
                "seq": payload["data"]["seq"],
                "record": payload["data"]["kind"] + "/" + payload["data"]["id"],
            }), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["serve", "verify"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--secret")
    args = parser.parse_args()
    serve(args) if args.mode == "serve" else verify(args)
