#!/usr/bin/python3
"""A production-like mail server for referrald's SMTP tests (Debian's aiosmtpd).

STARTTLS is required and AUTH (after TLS) is required when --cert is given;
without --cert the server offers neither (a server that would take mail in
clear). Each accepted message is stored in the Maildir given by --maildir, and, with
--envelopes FILE, its SMTP envelope (MAIL FROM, RCPT TOs, the Message-ID) as
one JSON line in FILE: the recipients a message's headers cannot tell.

Fault injection by recipient address:
  an address containing "reject"   -> 550 on RCPT, always
  an address containing "tempfail" -> 451 on RCPT for the first --tempfail N
                                      times (per address), then 250
  any address while the file given by --tempfail-while exists
                                   -> 451 on RCPT (a mail server that cannot
                                      take mail for a while: disk full,
                                      queue frozen), switched from outside
  any message while the file given by --slow-while exists
                                   -> stored, then answered only after
                                      --slow-seconds (a server slow to
                                      confirm: the sender holds the message's
                                      delivery while the mail is already in)

Prints "READY <port>" on stdout once it accepts connections. Listens on
127.0.0.1 only. Run it with /usr/bin/python3 (Debian's, which has aiosmtpd).
"""

import argparse
import asyncio
import email.parser
import email.policy
import json
import mailbox
import os
import signal
import ssl
import sys
import threading
from collections import Counter

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, maildir, tempfail, envelopes, tempfail_while, slow_while=None, slow_seconds=0.0):
        self.maildir = mailbox.Maildir(maildir, create=True)
        self.slow_while = slow_while
        self.slow_seconds = slow_seconds
        self.envelopes = envelopes
        self.tempfail = tempfail
        self.tempfail_while = tempfail_while
        self.seen = Counter()
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if "reject" in address:
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        if self.tempfail_while and os.path.exists(self.tempfail_while):
            return "451 4.3.1 insufficient system storage, try again later"
        if "tempfail" in address:
            with self.lock:
                self.seen[address] += 1
                count = self.seen[address]
            if count <= self.tempfail:
                return "451 4.3.0 try again later (%d of %d)" % (count, self.tempfail)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            # The envelope first: a test that sees the message in the
            # mailbox finds its envelope already recorded.
            if self.envelopes:
                headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
                    envelope.original_content)
                with open(self.envelopes, "a") as f:
                    f.write(json.dumps({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                                        "message_id": headers.get("Message-ID", "")}) + "\n")
            # Maildir writes to tmp/ and renames into new/.
            self.maildir.add(envelope.original_content)
        if self.slow_while and os.path.exists(self.slow_while):
            await asyncio.sleep(self.slow_seconds)
        return "250 2.0.0 Ok: queued"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--cert", help="PEM certificate; enables required STARTTLS and AUTH")
    parser.add_argument("--key", help="PEM private key for --cert")
    parser.add_argument("--user", default="referrald")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--tempfail", type=int, default=1)
    parser.add_argument("--envelopes", help="append each message's envelope to this file (JSON lines)")
    parser.add_argument("--tempfail-while", help="answer 451 to every RCPT while this file exists")
    parser.add_argument("--slow-while", help="answer each message --slow-seconds late while this file exists")
    parser.add_argument("--slow-seconds", type=float, default=30.0)
    args = parser.parse_args()

    handler = Handler(args.maildir, args.tempfail, args.envelopes, args.tempfail_while, args.slow_while,
                      args.slow_seconds)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == args.user.encode()
              and auth_data.password == args.password.encode())
        return AuthResult(success=ok, handled=False)

    kwargs = {}
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
        kwargs = dict(tls_context=context, require_starttls=True, authenticator=authenticator,
                      auth_required=True, auth_require_tls=True)
    controller = Controller(handler, hostname="127.0.0.1", port=args.port,
                            ready_timeout=10, **kwargs)
    controller.start()
    print("READY %d" % args.port, flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
