#!/usr/bin/env python3
"""Where a request's CPU goes: a perf profile of the daemon, grouped by stage.

    bench/stage_split.py PERF_DATA CPU_MS_PER_REQUEST

Reads `perf report --no-children` (self time per symbol, every thread of the
daemon) and adds each symbol's share to the stage its name belongs to, then
prints every stage's share and what it costs per request (the daemon's CPU
time per answered request times the share). The stages are told apart by the
libraries and namespaces the code uses, which is rough at the edges (a memcpy
counts where it is called from only with a call graph, so allocation and copies
form their own line) but stable from one commit to the next: compare runs
with the same script.
"""
import re
import subprocess
import sys

# First match wins; user-space patterns see "dso symbol", kernel ones (dso
# [kernel.kallsyms]) the symbol alone.
STAGES = [
    ("store: SQLite", r"libsqlite3|sqlite3"),
    ("store: SQL and rows (referrald)", r"referrald::store::"),
    ("sealing (AES-GCM, SHA-256)", r"libcrypto|EVP_|aesni|gcm_|sha256|Sha256"),
    ("JSON schema (valijson)", r"valijson"),
    ("JSON parse, DOM and dump (nlohmann)", r"nlohmann"),
    ("checks, decision, routing (referrald)", r"referrald::(?!store::|http::)"),
    ("HTTP (Beast, Asio)", r"boost::beast|boost::asio|referrald::http::"),
    ("logging (spdlog, fmt)", r"spdlog|fmt::|libfmt"),
    ("allocation and copies",
     r"malloc|free|_int_|memcpy|memmove|memset|memcmp|strlen|operator new|operator delete|unlink_chunk|basic_string"),
    ("C++ and C runtime (other)", r"libstdc\+\+|libc\.so|ld-linux"),
]
KERNEL_STAGES = [
    ("kernel: network", r"tcp|inet|sock|skb|__dev_queue|ip_|net_|loopback|epoll|netif|napi|__sys_send|__sys_recv"),
    ("kernel: files, WAL and fsync",
     r"ext4|jbd2|fsync|blk|iomap|filemap|vfs_|folio|page_cache|pwrite|pread|write_iter|generic_perform|xas_|mpage"),
    ("kernel: scheduling, futex, other", r"."),
]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data, cpu_ms = sys.argv[1], float(sys.argv[2])
    report = subprocess.run(
        ["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,sym", "-g", "none",
         "--percent-limit", "0"],
        capture_output=True, text=True, check=True).stdout
    shares = {name: 0.0 for name, _ in STAGES + KERNEL_STAGES}
    unclassified = []
    shares["other"] = 0.0
    line_re = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+(.*)$")
    for line in report.splitlines():
        m = line_re.match(line)
        if not m:
            continue
        share, dso, sym = float(m.group(1)), m.group(2), m.group(3)
        text = dso + " " + sym
        kernel = dso.startswith("[kernel")
        for name, pattern in KERNEL_STAGES if kernel else STAGES:
            if re.search(pattern, sym if kernel else text):
                shares[name] += share
                break
        else:
            shares["other"] += share
            unclassified.append((share, text))
    total = sum(shares.values()) or 1.0
    print(f"{'stage':40} {'share':>7} {'µs/request':>11}")
    for name, share in sorted(shares.items(), key=lambda kv: -kv[1]):
        if share <= 0:
            continue
        part = share / total
        print(f"{name:40} {part * 100:6.1f}% {part * cpu_ms * 1000:11.1f}")
    print(f"{'all (daemon CPU per answered request)':40} {100:6.1f}% {cpu_ms * 1000:11.1f}")
    if unclassified:
        top = ", ".join(f"{text[:60]} {share:.1f}%" for share, text in sorted(unclassified, reverse=True)[:5])
        print(f"largest in 'other': {top}")


if __name__ == "__main__":
    main()
