#!/usr/bin/env python3
"""Reads one callgrind dump of a broker run (bench/acl-cost.sh) and prints a
JSON line: instructions per delivered message in all, and inside the policy
decision. With --table, turns those lines into the Markdown table for
docs/benchmarks.md.

usage: acl_cost_report.py LABEL SCENARIO BENCH_JSON CALLGRIND_FILE [bench args...]
       acl_cost_report.py --table RESULTS.jsonl
"""
import json
import re
import subprocess
import sys

# Inclusive costs: the policy's `decide` (called through `dyn
# CompiledPolicy`, so never inlined away), and the per-client memo in front
# of it, which every publish and delivery decision goes through.
DECIDE = re.compile(r"AclPolicy as warden_policy::engine::CompiledPolicy>::decide")
MEMO = re.compile(r"warden::authorize::memo::DecisionMemo::decide \[")
NUMBER = re.compile(r"^\s*([\d,]+)")


def annotate(path):
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
        check=True, capture_output=True, text=True).stdout
    total = None
    decide = 0
    memo = 0
    for line in out.splitlines():
        m = NUMBER.match(line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in line:
            total = n
        elif DECIDE.search(line):
            decide += n
        elif MEMO.search(line):
            memo += n
    if total is None:
        sys.exit(f"no PROGRAM TOTALS in callgrind_annotate output of {path}")
    return total, decide, memo


def one(label, scenario, bench_json, path, args):
    run = json.loads(bench_json)
    total, decide, memo = annotate(path)
    msgs = run["msgs"]
    qos = args[args.index("--qos") + 1] if "--qos" in args else "0"
    print(json.dumps({
        "broker": label, "scenario": scenario, "qos": int(qos), "msgs": msgs,
        "ir_total": total, "ir_decide": decide, "ir_memo": memo,
        "memo_ir_per_msg": memo / msgs if msgs else None,
        "ir_per_msg": total / msgs if msgs else None,
        "decide_ir_per_msg": decide / msgs if msgs else None,
    }))


def table(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    by = {(r["scenario"], r["qos"], r["broker"]): r for r in rows}
    print("| scenario | QoS | instructions/msg, ACL (~1,000 rules) | instructions/msg, allow-all | difference | decisions (memo + `decide`)/msg, ACL | same, allow-all | decisions' share, ACL |")
    print("|---|---|---|---|---|---|---|---|")
    for scenario, qos in sorted({(r["scenario"], r["qos"]) for r in rows}):
        acl = by.get((scenario, qos, "warden"))
        allow = by.get((scenario, qos, "warden-allowall"))
        if not acl or not allow or not acl["ir_per_msg"] or not allow["ir_per_msg"]:
            continue
        cost = acl["ir_per_msg"] / allow["ir_per_msg"] - 1
        share = acl["memo_ir_per_msg"] / acl["ir_per_msg"]
        print(f"| {scenario} | {qos} | {acl['ir_per_msg']:,.0f} | {allow['ir_per_msg']:,.0f} | "
              f"{cost * 100:+.1f}% | {acl['memo_ir_per_msg']:,.1f} | {allow['memo_ir_per_msg']:,.1f} | {share * 100:.2f}% |")


if __name__ == "__main__":
    if sys.argv[1] == "--table":
        table(sys.argv[2])
    else:
        one(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
