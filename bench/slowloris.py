#!/usr/bin/python3
"""Slowloris against a referrald binary, for before/after comparisons.

    bench/slowloris.py BINARY ['EXTRA [http] LINES']

Starts BINARY on a temporary configuration (max_connections = 100,
read_timeout 2 s, idle_timeout 10 s, plus the extra lines), opens 150
connections from 127.0.0.1 that send a request head one byte every 200 ms,
asks /healthz from 127.0.0.2 ten times meanwhile and prints the statuses;
then sends one request on a kept-alive connection and its second head one
byte every 200 ms, and prints when the daemon closed it. Loopback only.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthz_from(port, source):
    with socket.create_connection(("127.0.0.1", port), source_address=(source, 0), timeout=3) as c:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        return c.recv(100)[9:12].decode() or "closed"


def main():
    binary = sys.argv[1]
    extra = sys.argv[2] if len(sys.argv) > 2 else ""
    work = tempfile.mkdtemp(prefix="slowloris-")
    port = free_port()
    with open(os.path.join(work, "referrald.toml"), "w") as f:
        f.write(f'[http]\nlisten = "127.0.0.1:{port}"\nmax_connections = 100\nread_timeout = "2s"\n'
                f'idle_timeout = "10s"\n{extra}\n[storage]\ndatabase = "{work}/referrald.db"\n'
                f'[rules]\nfile = "{SOURCE}/config/rules.toml"\n'
                f'[paths]\nschemas = "{SOURCE}/schemas"\nweb = "{SOURCE}/web"\n')
    daemon = subprocess.Popen([binary, "--config", os.path.join(work, "referrald.toml")],
                              stderr=open(os.path.join(work, "referrald.log"), "w"), start_new_session=True)
    try:
        time.sleep(1.0)
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(150)]
        head = b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: slowloris\r\n\r\n"
        answers = []
        for i in range(10):
            for c in slow:
                try:
                    c.send(head[i:i + 1])
                except OSError:
                    pass
            answers.append(healthz_from(port, "127.0.0.2"))
            time.sleep(0.2)
        print("150 slow heads from 127.0.0.1; /healthz from 127.0.0.2 meanwhile:", " ".join(answers))
        for c in slow:
            c.close()

        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            c.recv(1000)
            started = time.time()
            second = b"GET /healthz HTTP/1.1\r\nHost: a\r\nUser-Agent: slowloris-slowloris-slowloris\r\n\r\n"
            closed = None
            c.settimeout(0.2)
            for i in range(len(second)):
                try:
                    c.send(second[i:i + 1])
                    if c.recv(100) == b"":
                        closed = time.time() - started
                        break
                except socket.timeout:
                    pass
                except OSError:
                    closed = time.time() - started
                    break
        print("kept-alive connection, second head one byte every 200 ms: closed after",
              f"{closed:.1f} s" if closed else f"more than {time.time() - started:.0f} s")
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
