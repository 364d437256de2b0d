#!/usr/bin/python3
"""Posts COUNT copies of a referral to referrald's JSON API over keep-alive
connections from THREADS threads; prints how many got a 202 and how long it
took. Used by bench/run-drain to queue deliveries.
usage: post_referrals.py URL TOKEN FILE COUNT [THREADS]
"""
import http.client
import sys
import threading
import time
from urllib.parse import urlsplit


def main():
    url, token, path, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    body = open(path, "rb").read()
    parts = urlsplit(url)
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    lock = threading.Lock()
    state = {"next": 0, "ok": 0, "failed": 0}

    def worker():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        while True:
            with lock:
                if state["next"] >= count:
                    break
                state["next"] += 1
            for _ in range(3):
                try:
                    conn.request("POST", parts.path, body=body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                    status = 0
            with lock:
                state["ok" if status == 202 else "failed"] += 1
        conn.close()

    started = time.monotonic()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - started
    print("posted %d referrals (%d failed) in %.1f s, %.0f/s" %
          (state["ok"], state["failed"], elapsed, state["ok"] / elapsed if elapsed else 0))
    return 0 if state["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
