#!/usr/bin/python3
"""CLIENTS clients post one referral each, at the same time, with MB megabytes
of attachments, through the JSON API (base64 in "attachments"), the web form
(multipart/form-data, after opening the form for its CSRF cookie and tokens)
or FHIR (a transaction Bundle whose DocumentReference names a Binary, base64),
while the daemon's VmRSS is read from /proc/PID/status every 20 ms. Prints
RSS before, the highest sample, VmHWM, RSS after, and each request's status
and wall time. Used by bench/run-uploads.
usage: post_uploads.py URL TOKEN PID api|form|fhir [CLIENTS] [MB]
"""
import base64
import http.client
import json
import os
import random
import re
import sys
import threading
import time
from urllib.parse import urlsplit

REFERRAL = {
    "patient": {"given_name": "Ava", "family_name": "Nguyen", "birth_date": "2014-03-09", "sex": "female",
                "postal_code": "72401",
                "guardian": {"name": "Linh Nguyen", "phone": "+1 870 555 0142", "relationship": "mother"}},
    "diagnosis": {"name": "Alveolar soft part sarcoma", "code": {"system": "icd-o-3", "value": "9581/3"},
                  "diagnosed_on": "2024-10-02", "pathology_confirmed": True},
    "referrer": {"name": "Dana Whitfield", "credential": "MD", "npi": "1234567893",
                 "organization": "Delta Pediatrics", "phone": "+1 870 555 0100", "fax": "+1 870 555 0101",
                 "email": "dwhitfield@example.org"},
    "urgency": "routine",
    "notes": "Painless mass in the left thigh for 5 months.",
}

FORM_FIELDS = [
    ("patient.given_name", "Ava"), ("patient.family_name", "Nguyen"), ("patient.birth_date", "2014-03-09"),
    ("patient.sex", "female"), ("patient.postal_code", "72401"), ("patient.guardian.name", "Linh Nguyen"),
    ("patient.guardian.phone", "+1 901 555 0142"), ("patient.guardian.relationship", "mother"),
    ("diagnosis.name", "Alveolar soft part sarcoma"), ("diagnosis.code.system", "icd-o-3"),
    ("diagnosis.code.value", "9581/3"), ("diagnosis.diagnosed_on", "2024-10-02"),
    ("diagnosis.pathology_confirmed", "yes"), ("referrer.name", "Dana Whitfield"), ("referrer.credential", "MD"),
    ("referrer.npi", "1234567893"), ("referrer.organization", "Delta Pediatrics"),
    ("referrer.phone", "+1 901 555 0100"), ("referrer.fax", ""), ("referrer.email", "dwhitfield@example.org"),
    ("urgency", "routine"), ("notes", "Painless mass in the left thigh for 5 months."),
]

BOUNDARY = "----referraldBenchBoundary5f1c2a"


def scanned_pdf(size, seed):
    """A one-page PDF of `size` bytes whose page is one image of random bytes
    (as a scan is: nearly all of the file is one stream). qpdf opens it; the
    image is not decoded by the inspection."""
    rng = random.Random(seed)
    head = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /Im1 5 0 R >> >> "
        b"/Contents 4 0 R >>",
    ]
    content = b"q 612 0 0 792 0 0 cm /Im1 Do Q"
    objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    fixed = len(head) + sum(len(o) + 20 for o in objects) + 400
    n = size - fixed
    side = 1
    while (side + 1) * (side + 1) <= n:
        side += 1
    image = rng.randbytes(n)
    objects.append(b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
                   b"/BitsPerComponent 8 /Length %d >>\nstream\n" % (side, side, n) + image + b"\nendstream")
    out = bytearray(head)
    offsets = []
    for i, o in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def rss_sampler(pid, samples, stop):
    while not stop.is_set():
        samples.append((time.monotonic(), status_kib(pid, "VmRSS")))
        time.sleep(0.02)


def status_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def api_request(parts, token, pdf, n):
    doc = dict(REFERRAL)
    doc["attachments"] = [{"title": "Scanned records %d" % n, "content_type": "application/pdf",
                           "data": base64.b64encode(pdf).decode()}]
    body = json.dumps(doc).encode()
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json",
               "Idempotency-Key": "bench-upload-%d-%d" % (n, time.time_ns())}
    return "POST", "/api/v1/referrals", body, headers


def fhir_request(token, pdf, n):
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "tests", "data", "fhir", "transaction.json")) as f:
        bundle = json.load(f)
    bundle["entry"][0]["request"].pop("ifNoneExist", None)  # each client's its own referral
    bundle["entry"][0]["resource"]["supportingInfo"] = [{"reference": "urn:uuid:bench-document"}]
    bundle["entry"].append({"fullUrl": "urn:uuid:bench-document",
                            "resource": {"resourceType": "DocumentReference", "status": "current",
                                         "description": "Scanned records %d" % n,
                                         "content": [{"attachment": {"url": "urn:uuid:bench-binary"}}]},
                            "request": {"method": "POST", "url": "DocumentReference"}})
    bundle["entry"].append({"fullUrl": "urn:uuid:bench-binary",
                            "resource": {"resourceType": "Binary", "contentType": "application/pdf",
                                         "data": base64.b64encode(pdf).decode()},
                            "request": {"method": "POST", "url": "Binary"}})
    body = json.dumps(bundle).encode()
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/fhir+json",
               "Idempotency-Key": "bench-fhir-%d-%d" % (n, time.time_ns())}
    return "POST", "/fhir/r4", body, headers


def form_request(parts, pdf, n):
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    conn.request("GET", "/")
    page = conn.getresponse()
    html = page.read().decode()
    cookie = page.getheader("Set-Cookie").split(";")[0]
    conn.close()

    def hidden(name):
        return re.search(r'name="%s" value="([^"]*)"' % name, html).group(1)

    fields = [("csrf_token", hidden("csrf_token")), ("submission_token", hidden("submission_token"))] + FORM_FIELDS
    out = bytearray()
    for name, value in fields:
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (BOUNDARY, name, value)).encode()
    out += ("--%s\r\nContent-Disposition: form-data; name=\"attachments\"; filename=\"scan-%d.pdf\"\r\n"
            "Content-Type: application/pdf\r\n\r\n" % (BOUNDARY, n)).encode()
    out += pdf + ("\r\n--%s--\r\n" % BOUNDARY).encode()
    headers = {"Content-Type": "multipart/form-data; boundary=" + BOUNDARY, "Cookie": cookie}
    return "POST", "/referrals", bytes(out), headers


def main():
    url, token, pid, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    clients = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    megabytes = int(sys.argv[6]) if len(sys.argv) > 6 else 20
    parts = urlsplit(url)
    pdf = scanned_pdf(megabytes * 1000 * 1000, 42)
    make = {"api": lambda n: api_request(parts, token, pdf, n), "form": lambda n: form_request(parts, pdf, n),
            "fhir": lambda n: fhir_request(token, pdf, n)}[mode]
    requests = [make(n) for n in range(clients)]
    expected = {"api": 202, "form": 303, "fhir": 200}[mode]
    results = [None] * clients
    start = threading.Barrier(clients + 1)

    def client(n):
        method, path, body, headers = requests[n]
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
        start.wait()
        began = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as e:
            status = "error: %s" % e
        results[n] = (status, time.monotonic() - began)
        conn.close()

    time.sleep(0.5)
    before = status_kib(pid, "VmRSS")
    hwm_before = status_kib(pid, "VmHWM")
    samples, stop = [], threading.Event()
    sampler = threading.Thread(target=rss_sampler, args=(pid, samples, stop))
    sampler.start()
    pool = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in pool:
        t.start()
    start.wait()
    began = time.monotonic()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - began
    time.sleep(1.0)
    stop.set()
    sampler.join()
    after = status_kib(pid, "VmRSS")
    hwm = status_kib(pid, "VmHWM")
    peak = max(s[1] for s in samples)
    print("mode %s: %d clients, one %d-byte PDF each (request body %d bytes)" %
          (mode, clients, len(pdf), len(requests[0][2])))
    print("VmRSS before: %.1f MB (VmHWM %.1f MB)" % (before / 1024, hwm_before / 1024))
    print("VmRSS highest sample: %.1f MB; VmHWM: %.1f MB" % (peak / 1024, hwm / 1024))
    print("VmRSS 1 s after the last answer: %.1f MB" % (after / 1024))
    for n, (status, secs) in enumerate(results):
        print("request %d: status %s, %.2f s" % (n + 1, status, secs))
    print("all %d answered in %.2f s" % (clients, elapsed))
    t0 = samples[0][0]
    print("VmRSS over time (s, MB): " + " ".join("%.1f:%.0f" % (t - t0, kib / 1024) for t, kib in samples[::10]))
    return 0 if all(r[0] == expected for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
