#!/usr/bin/python3
"""A small commercial-fax-API look-alike (Phaxio v2's shape) for the
integration tests: no fax provider is reachable from a test machine, so the
suite brings its own. Plain HTTP on loopback, or HTTPS with --cert/--key.

  POST /v2/faxes      multipart/form-data with "to" and "file"; HTTP Basic
                      auth (--user/--password) required, else 401. Answers
                      {"success":true,"data":{"id":N}}, or 503 for the first
                      --fail-first requests. A repeated Idempotency-Key gets
                      the first answer's id again (as providers do).
  GET  /v2/faxes/ID   {"success":true,"data":{"id":ID,"status":S}}: S is
                      "queued" for the first --pending-polls polls of a fax,
                      then --final-status ("success").

Every submit is recorded as RECORD/submit-NNN.json (headers, fields, the
provider id, whether the key was a repeat) with its file as
RECORD/submit-NNN.pdf; every poll appends "ID STATUS" to RECORD/polls.log.
"""

import argparse
import base64
import json
import os
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_multipart(content_type, body):
    """The parts of a multipart/form-data body, read strictly (CRLF line
    ends, the boundary from the Content-Type) so a malformed body shows."""
    m = re.match(r'multipart/form-data;\s*boundary="?([^";]+)"?$', content_type)
    if m is None:
        return []
    delimiter = b"--" + m.group(1).encode()
    chunks = body.split(b"\r\n" + delimiter)
    if not chunks[0].startswith(delimiter):
        return []
    chunks[0] = chunks[0][len(delimiter):]
    parts = []
    for chunk in chunks:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk[2:].partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("utf-8").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        parts.append({"name": name.group(1) if name else None,
                      "filename": filename.group(1) if filename else None,
                      "content_type": headers.get("content-type"),
                      "data": data})
    return parts


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        print("fax_api_server: " + fmt % args, flush=True)

    def authorized(self):
        expected = base64.b64encode(f"{self.server.user}:{self.server.password}".encode()).decode()
        return self.headers.get("Authorization", "") == "Basic " + expected

    def answer(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        with self.server.lock:  # one request at a time: the records stay in order
            self.handle_post()

    def handle_post(self):
        server = self.server
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.path != "/v2/faxes":
            self.answer(404, {"success": False, "message": "no such endpoint"})
            return
        if not self.authorized():
            self.answer(401, {"success": False, "message": "Invalid API credentials"})
            return
        server.submits += 1
        n = server.submits
        if n <= server.fail_first:
            self.answer(503, {"success": False, "message": "Service temporarily unavailable"})
            return

        fields, files = {}, []
        for part in parse_multipart(self.headers.get("Content-Type", ""), body):
            if part["filename"] is not None:
                files.append(part)
            else:
                fields[part["name"]] = part["data"].decode("utf-8")
        if not files or not fields:
            self.answer(422, {"success": False, "message": "a fax needs a file and a number"})
            return

        key = self.headers.get("Idempotency-Key")
        repeat = key is not None and key in server.keys
        if repeat:
            fax_id = server.keys[key]
        else:
            server.next_id += 1
            fax_id = server.next_id
            server.faxes.add(fax_id)
            if key is not None:
                server.keys[key] = fax_id
        base = os.path.join(server.record, f"submit-{n:03d}")
        if files:
            with open(base + ".pdf", "wb") as f:
                f.write(files[0]["data"])
        record = {
            "id": fax_id,
            "repeat": repeat,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "fields": fields,
            "files": [{k: v for k, v in f.items() if k != "data"} for f in files],
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(record, f)
        os.rename(base + ".json.tmp", base + ".json")
        self.answer(200, {"success": True, "message": "Fax queued for sending", "data": {"id": fax_id}})

    def do_GET(self):
        with self.server.lock:
            self.handle_get()

    def handle_get(self):
        server = self.server
        m = re.fullmatch(r"/v2/faxes/(\d+)", self.path)
        if not self.authorized():
            self.answer(401, {"success": False, "message": "Invalid API credentials"})
            return
        if m is None or int(m.group(1)) not in server.faxes:
            self.answer(404, {"success": False, "message": "Fax not found"})
            return
        fax_id = int(m.group(1))
        polls = server.polls.get(fax_id, 0) + 1
        server.polls[fax_id] = polls
        status = "queued" if polls <= server.pending_polls else server.final_status
        with open(os.path.join(server.record, "polls.log"), "a") as f:
            f.write(f"{fax_id} {status}\n")
        self.answer(200, {"success": True, "data": {"id": fax_id, "status": status}})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--pending-polls", type=int, default=0)
    p.add_argument("--final-status", default="success")
    a = p.parse_args()
    os.makedirs(a.record, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    server.lock = threading.Lock()  # clients keep connections open: one thread each
    server.record = a.record
    server.user = a.user
    server.password = a.password
    server.fail_first = a.fail_first
    server.pending_polls = a.pending_polls
    server.final_status = a.final_status
    server.submits = 0
    server.next_id = 1000
    server.keys = {}
    server.faxes = set()
    server.polls = {}
    scheme = "http"
    if a.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(a.cert, a.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    print(f"fax_api_server: listening on {scheme}://127.0.0.1:{a.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
