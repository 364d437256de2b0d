#!/usr/bin/python3
"""Posts one referral with FILES attachments of MB megabytes each (the same
scanned-style PDF as bench/post_uploads.py) through the JSON API, then waits
until its email delivery is delivered, while the daemon's VmRSS is read from
/proc/PID/status every 20 ms. Prints VmRSS before, the highest sample while
the referral was taken (until the 202) and while it was emailed (from the
202 until the delivery is delivered), VmHWM, and the times. Used by
bench/run-mail-files.
usage: mail_files.py URL TOKEN PID [FILES] [MB]
"""
import base64
import http.client
import json
import sys
import threading
import time
from urllib.parse import urlsplit

from post_uploads import REFERRAL, rss_sampler, scanned_pdf, status_kib


def request(parts, method, path, token, body=None):
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    headers = {"Authorization": "Bearer " + token}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def main():
    url, token, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    files = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    megabytes = int(sys.argv[5]) if len(sys.argv) > 5 else 20
    parts = urlsplit(url)
    pdf = scanned_pdf(megabytes * 1000 * 1000, 42)
    doc = dict(REFERRAL)
    data = base64.b64encode(pdf).decode()
    doc["attachments"] = [{"title": "Scanned records %d" % n, "content_type": "application/pdf", "data": data}
                          for n in range(files)]
    body = json.dumps(doc).encode()
    del data

    time.sleep(0.5)
    before = status_kib(pid, "VmRSS")
    samples, stop = [], threading.Event()
    sampler = threading.Thread(target=rss_sampler, args=(pid, samples, stop))
    sampler.start()
    began = time.monotonic()
    status, answer = request(parts, "POST", "/api/v1/referrals", token, body)
    answered = time.monotonic()
    state = "(no answer)"
    if status == 202:
        referral = json.loads(answer)["id"]
        while time.monotonic() - answered < 600:
            code, text = request(parts, "GET", "/api/v1/referrals/" + referral, token)
            deliveries = json.loads(text).get("deliveries", []) if code == 200 else []
            state = deliveries[0]["state"] if deliveries else "(none)"
            if state in ("delivered", "dead", "cancelled"):
                break
            time.sleep(0.05)
    ended = time.monotonic()
    time.sleep(1.0)
    stop.set()
    sampler.join()
    after = status_kib(pid, "VmRSS")
    hwm = status_kib(pid, "VmHWM")
    intake_peak = max((kib for t, kib in samples if t <= answered), default=0)
    mail_peak = max((kib for t, kib in samples if t > answered), default=0)
    print("%d files of %d bytes (one PDF), request body %d bytes" % (files, len(pdf), len(body)))
    print("answer: %s after %.2f s; delivery: %s %.2f s after the answer" %
          (status, answered - began, state, ended - answered))
    print("VmRSS before: %.1f MB" % (before / 1024))
    print("VmRSS highest sample while the referral was taken: %.1f MB" % (intake_peak / 1024))
    print("VmRSS highest sample while it was emailed: %.1f MB" % (mail_peak / 1024))
    print("VmHWM: %.1f MB; VmRSS 1 s after the delivery: %.1f MB" % (hwm / 1024, after / 1024))
    t0 = samples[0][0]
    print("VmRSS over time (s, MB): " + " ".join("%.1f:%.0f" % (t - t0, kib / 1024) for t, kib in samples[::10]))
    return 0 if status == 202 and state == "delivered" else 1


if __name__ == "__main__":
    sys.exit(main())
