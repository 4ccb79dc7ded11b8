#!/usr/bin/env python3
"""Medians (min-max) of bench/ws.sh's runs, per scenario and transport.

usage: ws_report.py RESULTS.jsonl
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
            runs[(r["scenario"], r["transport"])].append(r)
    print("| scenario | transport | runs | connects/s | msg/s | broker CPU µs/msg |")
    print("|---|---|---|---|---|---|")
    for (scenario, transport), rs in runs.items():

        def cell(key, fmt):
            vals = [r[key] for r in rs if r.get(key) is not None]
            if not vals:
                return "–"
            return f"{fmt(statistics.median(vals))} ({fmt(min(vals))}–{fmt(max(vals))})"

        whole = lambda v: f"{v:,.0f}"
        frac = lambda v: f"{v:.2f}"
        print(
            f"| {scenario} | {transport} | {len(rs)} | {cell('connects_per_s', whole)} "
            f"| {cell('msg_per_s', whole)} | {cell('broker_cpu_us_per_msg', frac)} |"
        )


if __name__ == "__main__":
    main(sys.argv[1])
