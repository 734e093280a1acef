"""A loopback SMTP server for tests: prints its port on the first line of stdout, then appends
every message it receives to --out as one JSON line {"mail_from", "rcpt_tos", "data"}.
It only ever listens on 127.0.0.1."""

import argparse
import asyncio
import json
import socket
import sys

from aiosmtpd.controller import Controller


class Keep:
    def __init__(self, out):
        self.out = out

    async def handle_DATA(self, server, session, envelope):
        data = envelope.content.decode("utf-8", errors="replace")
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos, "data": data}) + "\n")
        return "250 OK"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    port = free_port()
    controller = Controller(Keep(args.out), hostname="127.0.0.1", port=port)
    controller.start()
    print(port, flush=True)
    try:
        # Run until the test kills us (or stdin closes).
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
