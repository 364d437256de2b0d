#!/usr/bin/python3
"""A small WCTP 1.3 host for the integration tests (no carrier is reachable
from a test machine, so the suite brings its own): HTTPS with a certificate
the test made, one wctp-SubmitRequest per POST, answered with a
wctp-Confirmation.

Every request body is recorded as RECORD/NNN.xml (NNN counts from 001) with
its headers in RECORD/NNN.json. The answer is:
  - wctp-Failure 604 (temporary) for the first --fail-first requests;
  - wctp-Failure 403 when the recipientID is --reject-recipient ("999");
  - wctp-Failure 301 when the body is not XML;
  - wctp-Success 200 otherwise.
"""

import argparse
import json
import os
import ssl
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import quoteattr


def confirmation(success, code, text):
    element = "wctp-Success" if success else "wctp-Failure"
    attr = "successCode" if success else "errorCode"
    text_attr = "successText" if success else "errorText"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE wctp-Operation SYSTEM "http://dtd.wctp.org/wctp-dtd-v1r3.dtd">\n'
        '<wctp-Operation wctpVersion="wctp-dtd-v1r3"><wctp-Confirmation>'
        f"<{element} {attr}={quoteattr(str(code))} {text_attr}={quoteattr(text)}/>"
        "</wctp-Confirmation></wctp-Operation>\n"
    ).encode("utf-8")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep the test log readable
        print("wctp_server: " + fmt % args, flush=True)

    def do_POST(self):
        with self.server.lock:  # one request at a time: the records stay in order
            self.handle_post()

    def handle_post(self):
        server = self.server
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        server.count += 1
        n = server.count
        base = os.path.join(server.record, f"{n:03d}")
        with open(base + ".json.tmp", "w") as f:
            json.dump({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}, f)
        with open(base + ".xml.tmp", "wb") as f:
            f.write(body)
        os.rename(base + ".json.tmp", base + ".json")
        os.rename(base + ".xml.tmp", base + ".xml")

        try:
            root = ET.fromstring(body)
            recipient = root.find("./wctp-SubmitRequest/wctp-SubmitHeader/wctp-Recipient")
            recipient_id = recipient.get("recipientID") if recipient is not None else None
        except ET.ParseError:
            self.answer(confirmation(False, 301, "Unparsable XML"))
            return
        if n <= server.fail_first:
            self.answer(confirmation(False, 604, "Internal error, try again"))
        elif recipient_id == server.reject_recipient:
            self.answer(confirmation(False, 403, "Invalid recipientID"))
        else:
            self.answer(confirmation(True, 200, "Message accepted"))

    def answer(self, data):
        self.send_response(200)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--reject-recipient", default="999")
    a = p.parse_args()
    os.makedirs(a.record, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    server.lock = threading.Lock()  # clients keep connections open: one thread each
    server.count = 0
    server.record = a.record
    server.fail_first = a.fail_first
    server.reject_recipient = a.reject_recipient
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(a.cert, a.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"wctp_server: listening on https://127.0.0.1:{a.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
