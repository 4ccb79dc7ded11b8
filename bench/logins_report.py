#!/usr/bin/env python3
"""Medians (min-max) of bench/logins.sh's runs, per storm and transport.

usage: logins_report.py RESULTS.jsonl
"""

import json
import statistics
import sys
from collections import defaultdict


def main(path):
    runs = defaultdict(list)
    for line in open(path):
        if line.startswith("{"):
            r = json.loads(line)
            runs[(r["broker"], r["transport"])].append(r)
    print(
        "| storm | transport | runs | logins | failed | s to last CONNACK | p99 CONNACK ms "
        "| peak RSS MB | argon2 runs | shared |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (storm, transport), rs in runs.items():

        def cell(key, fmt, scale=1.0):
            vals = [r[key] * scale for r in rs if r.get(key) is not None]
            if not vals:
                return "–"
            return f"{fmt(statistics.median(vals))} ({fmt(min(vals))}–{fmt(max(vals))})"

        whole = lambda v: f"{v:,.0f}"
        frac = lambda v: f"{v:.2f}"
        print(
            f"| {storm} | {transport} | {len(rs)} | {cell('msgs', whole)} | {cell('drops', whole)} "
            f"| {cell('secs', frac)} | {cell('p99_us', whole, 1e-3)} "
            f"| {cell('rss_peak_kb', frac, 1 / 1024)} | {cell('argon2', whole)} | {cell('shared', whole)} |"
        )
    loads = sorted({r.get("load", "") for rs in runs.values() for r in rs})
    print(f"\nload averages at the end of the runs: {', '.join(loads)}")


if __name__ == "__main__":
    main(sys.argv[1])
