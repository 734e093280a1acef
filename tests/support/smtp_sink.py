"""A loopback SMTP server for tests.

Prints its port on the first line of stdout, then appends every message it receives to --out
as one JSON line {"mail_from", "rcpt_tos", "data"} (plus "auth": the login, with --auth).
It listens on 127.0.0.1 only, on a port the kernel picks (bound before it is printed, so two
sinks can never race for one port), and exits when stdin closes or it is killed.

--auth USER:PASSWORD offers AUTH PLAIN/LOGIN without TLS and accepts only that pair.
"""

import argparse
import asyncio
import json
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Keep:
    def __init__(self, out):
        self.out = out

    async def handle_DATA(self, server, session, envelope):
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", errors="replace"),
        }
        if session.auth_data is not None:
            login = getattr(session.auth_data, "login", b"")
            record["auth"] = login.decode("utf-8", errors="replace")
        # One write per line, so a reader sees whole lines or a trailing partial one.
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 OK"


def authenticator(expected):
    user, _, password = expected.partition(":")

    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        if ok:
            # aiosmtpd keeps auth_data on the session only when the result carries it.
            return AuthResult(success=True, auth_data=auth_data)
        # handled=False: let aiosmtpd answer 535 (True would mean we had answered).
        return AuthResult(success=False, handled=False)

    return check


async def serve(out, auth):
    handler = Keep(out)
    options = {"hostname": "smtp-sink.test"}
    if auth is not None:
        options.update(auth_require_tls=False, authenticator=authenticator(auth))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, **options), host="127.0.0.1", port=0
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    # Runs until the test kills us, or its end of stdin closes (the test process died).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--auth", help="USER:PASSWORD to require")
    args = parser.parse_args()
    asyncio.run(serve(args.out, args.auth))


if __name__ == "__main__":
    main()
