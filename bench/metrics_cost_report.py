#!/usr/bin/env python3
"""Reads one callgrind dump of a broker run (bench/metrics-cost.sh) and
prints a JSON line: instructions per delivered message in all, and inside
the message counters. With --table, the Markdown table for
docs/benchmarks.md.

usage: metrics_cost_report.py LABEL SCENARIO BENCH_JSON CALLGRIND_FILE [bench args...]
       metrics_cost_report.py --table RESULTS.jsonl
"""
import json
import re
import subprocess
import sys

COUNT = re.compile(r"warden::observe::stats::Sharded::add \[")
NUMBER = re.compile(r"^\s*([\d,]+)")


def annotate(path):
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
        check=True, capture_output=True, text=True).stdout
    total, count = None, 0
    for line in out.splitlines():
        m = NUMBER.match(line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in line:
            total = n
        elif COUNT.search(line):
            count += n
    if total is None:
        sys.exit(f"no PROGRAM TOTALS in callgrind_annotate output of {path}")
    return total, count


def one(label, scenario, bench_json, path, args):
    run = json.loads(bench_json)
    total, count = annotate(path)
    msgs = run["msgs"]
    qos = args[args.index("--qos") + 1] if "--qos" in args else "0"
    print(json.dumps({
        "broker": label, "scenario": scenario, "qos": int(qos), "msgs": msgs,
        "ir_total": total, "ir_count": count,
        "ir_per_msg": total / msgs if msgs else None,
        "count_ir_per_msg": count / msgs if msgs else None,
    }))


def table(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    print("| scenario | QoS | run | instructions/msg | counting/msg | counting's share |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        share = r["count_ir_per_msg"] / r["ir_per_msg"] if r["ir_per_msg"] else 0
        print(f"| {r['scenario']} | {r['qos']} | {r['broker']} | {r['ir_per_msg']:,.0f} | "
              f"{r['count_ir_per_msg']:,.1f} | {share * 100:.2f}% |")


if __name__ == "__main__":
    if sys.argv[1] == "--table":
        table(sys.argv[2])
    else:
        one(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
