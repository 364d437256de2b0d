#!/usr/bin/env python3
"""Where a referral's time went, by stage, from two /metrics texts.

    bench/stage_latency.py BEFORE AFTER

Prints, for each stage of referrald_intake_stage_seconds and
referrald_store_write_seconds, how many were counted between the two
scrapes, their mean, and p50 / p90 / p99 estimated from the histogram's
buckets as Prometheus' histogram_quantile() does (linear within a bucket),
so a quantile is only as fine as the bucket it falls in.
"""
import re
import sys

SERIES = re.compile(r'^(referrald_(?:intake_stage|store_write)_seconds)_(bucket|sum|count)\{([^}]*)\} (\S+)$')


def read(path):
    figures = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = SERIES.match(line.strip())
            if not m:
                continue
            name, kind, labels, value = m.groups()
            label = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            key = (name, label["stage"])
            entry = figures.setdefault(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
            if kind == "bucket":
                entry["buckets"][label["le"]] = float(value)
            else:
                entry[kind] = float(value)
    return figures


def quantile(q, buckets):
    """buckets: [(upper bound, cumulative count)] ascending, the last +Inf."""
    total = buckets[-1][1]
    if total <= 0:
        return float("nan")
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound  # past the last finite bound: that bound
            width = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / width if width else 1.0)
        lower_bound, lower_count = bound, count
    return lower_bound


def main():
    before, after = read(sys.argv[1]), read(sys.argv[2])
    order = [("referrald_intake_stage_seconds", "check"), ("referrald_store_write_seconds", "queued"),
             ("referrald_store_write_seconds", "commit"), ("referrald_store_write_seconds", "sync"),
             ("referrald_intake_stage_seconds", "resume")]
    print(f"{'stage':<28}{'count':>9}{'mean ms':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}")
    for key in order:
        if key not in after:
            continue
        a, b = after[key], before.get(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
        count = a["count"] - b["count"]
        buckets = sorted(((float("inf") if le == "+Inf" else float(le)), n - b["buckets"].get(le, 0.0))
                         for le, n in a["buckets"].items())
        mean = (a["sum"] - b["sum"]) / count * 1000 if count else float("nan")
        name = ("intake: " if "intake" in key[0] else "store: ") + key[1]
        p50, p90, p99 = (quantile(q, buckets) * 1000 for q in (0.5, 0.9, 0.99))
        print(f"{name:<28}{count:>9.0f}{mean:>10.3f}{p50:>9.3f}{p90:>9.3f}{p99:>9.3f}")


if __name__ == "__main__":
    main()
