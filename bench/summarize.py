#!/usr/bin/env python3
"""Turns compare.sh's JSON lines into the results section of
docs/benchmarks.md: medians with min-max per scenario and broker, and the
issue's targets checked against the medians.

usage: summarize.py RESULTS.jsonl MACHINE.txt BENCHMARKS.md
       summarize.py --durability PERSIST.jsonl MACHINE.txt BENCHMARKS.md
The text between the results markers in BENCHMARKS.md is replaced; the rest
of the file is kept. --durability writes the Durability section instead
(bench/durability_report.py, from bench/persist.sh's runs).
"""

import json
import os
import statistics
import sys
from collections import defaultdict

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
BROKERS = ["warden", "warden-allowall", "warden-anonymous", "mosquitto", "flashmq", "rumqttd"]


def load(path):
    runs = defaultdict(list)
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        scenario = r["scenario"]
        if scenario == "latency" and r.get("rate") not in (None, 1000):
            # Latency at another rate is a section of its own.
            scenario = f"latency{r['rate']}"
        runs[(scenario, r["transport"], r.get("qos"), r["broker"])].append(r)
    return runs


def values(rs, field):
    return [r[field] for r in rs if r.get(field) is not None]


def median(rs, field):
    v = values(rs, field)
    return statistics.median(v) if v else None


def cell(rs, field, digits=0):
    v = values(rs, field)
    if not v:
        return "–"
    fmt = f"{{:,.{digits}f}}"
    m = fmt.format(statistics.median(v))
    if len(v) == 1:
        return m
    return f"{m} ({fmt.format(min(v))}–{fmt.format(max(v))})"


def table(runs, scenario, columns):
    keys = sorted(
        (k for k in runs if k[0] == scenario),
        key=lambda k: (k[1], k[2] or 0, BROKERS.index(k[3]) if k[3] in BROKERS else 9),
    )
    if not keys:
        return []
    head = "| transport | QoS | broker | runs | " + " | ".join(c[0] for c in columns) + " |"
    out = [head, "|" + "---|" * (4 + len(columns))]
    for k in keys:
        rs = runs[k]
        cells = [cell(rs, f, d) for _, f, d in columns]
        qos = "–" if k[2] is None else str(k[2])
        out.append(f"| {k[1]} | {qos} | {k[3]} | {len(rs)} | " + " | ".join(cells) + " |")
    return out


THROUGHPUT = [
    ("msg/s delivered", "msg_per_s", 0),
    ("broker CPU µs/msg", "broker_cpu_us_per_msg", 2),
    ("client CPU s", "client_cpu_s", 2),
    ("drops", "drops", 0),
]
LATENCY = [
    ("p50 µs", "p50_us", 0), ("p99 µs", "p99_us", 0), ("p99.9 µs", "p999_us", 0),
    ("broker CPU µs/msg", "broker_cpu_us_per_msg", 1), ("drops", "drops", 0)]
SECTIONS = [
    ("fanin", "Fan-in: 8 publishers → 1 subscriber (`bench/+/t`), 64-byte payloads", THROUGHPUT),
    ("fanout", "Fan-out: 1 publisher → 50 subscribers, 64-byte payloads", THROUGHPUT),
    ("latency", "Latency: 1,000 msg/s, 1 publisher → 1 subscriber", LATENCY),
    ("latency10000", "Latency: 10,000 msg/s, 1 publisher → 1 subscriber", LATENCY),
    ("connect", "Connect: full handshakes to CONNACK, 64 in flight", [
        ("connects/s", "connects_per_s", 0), ("CONNACK p50 µs", "p50_us", 0),
        ("CONNACK p99 µs", "p99_us", 0), ("broker CPU µs/connect", "broker_cpu_us_per_msg", 0),
        ("client CPU s", "client_cpu_s", 2), ("failed", "drops", 0)]),
    ("idle", "Idle connections: broker RSS growth per connection", [
        ("connections", "msgs", 0), ("RSS KB/conn", "rss_kb_per_conn", 2),
        ("connects/s", "connects_per_s", 0), ("failed", "drops", 0)]),
]


def ratio(runs, a, b, field):
    ma, mb = median(runs.get(a, []), field), median(runs.get(b, []), field)
    if ma is None or mb is None or mb == 0:
        return None
    return ma / mb


ACL_COST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "last-acl-cost.jsonl")


def acl_cost_rows():
    """(scenario, qos) -> extra instructions per message the ACL's decisions
    cost over allow-all's, in % of allow-all's instructions per message."""
    if not os.path.exists(ACL_COST):
        return {}
    rows = [json.loads(l) for l in open(ACL_COST) if l.strip()]
    by = {(r["scenario"], r["qos"], r["broker"]): r for r in rows}
    out = {}
    for (sc, qos, broker), acl in by.items():
        allow = by.get((sc, qos, "warden-allowall"))
        if broker != "warden" or not allow or not allow["ir_per_msg"]:
            continue
        extra = acl["memo_ir_per_msg"] - allow["memo_ir_per_msg"]
        out[(sc, qos)] = extra / allow["ir_per_msg"] * 100
    return out


def target_rows(runs):
    rows = []

    def check(name, value, ok, shown):
        if value is None:
            rows.append(f"| {name} | not measured | – |")
        else:
            rows.append(f"| {name} | {shown} | {'yes' if ok else '**no**'} |")

    for qos, need in ((0, 2), (1, 4)):
        r = ratio(runs, ("fanin", "tcp", qos, "warden"), ("fanin", "tcp", qos, "mosquitto"), "msg_per_s")
        check(f"fan-in QoS {qos} ≥ {need}× Mosquitto", r, r is not None and r >= need, f"{r:.2f}×" if r else "")
        r = ratio(runs, ("fanin", "tcp", qos, "warden"), ("fanin", "tcp", qos, "rumqttd"), "msg_per_s")
        check(f"fan-in QoS {qos} ≥ rumqttd", r, r is not None and r >= 1, f"{r:.2f}×" if r else "")
    for qos in (0, 1):
        r = ratio(runs, ("fanout", "tcp", qos, "warden"), ("fanout", "tcp", qos, "mosquitto"), "msg_per_s")
        check(f"fan-out QoS {qos} ≥ 8× Mosquitto", r, r is not None and r >= 8, f"{r:.2f}×" if r else "")
    for qos in (0, 1):
        for p in ("p50_us", "p99_us"):
            r = ratio(runs, ("latency", "tcp", qos, "warden"), ("latency", "tcp", qos, "mosquitto"), p)
            check(f"latency QoS {qos} {p[:-3]} at 1,000 msg/s ≤ Mosquitto", r, r is not None and r <= 1,
                  f"{r:.2f}× Mosquitto's" if r else "")
    r = ratio(runs, ("connect", "mtls", None, "warden"), ("connect", "mtls", None, "mosquitto"), "connects_per_s")
    check("mTLS connects/s ≥ 3× Mosquitto", r, r is not None and r >= 3, f"{r:.2f}×" if r else "")
    v = median(runs.get(("idle", "tcp", None, "warden-anonymous"), []), "rss_kb_per_conn")
    check("idle plain ≤ 4 KB RSS/conn", v, v is not None and v <= 4, f"{v:.2f} KB" if v is not None else "")
    r = ratio(runs, ("idle", "mtls", None, "warden"), ("idle", "mtls", None, "mosquitto"), "rss_kb_per_conn")
    check("idle mTLS RSS/conn < Mosquitto", r, r is not None and r < 1, f"{r:.2f}× Mosquitto's" if r else "")
    # Issue 14: against FlashMQ, when compare.sh ran it (FLASHMQ_BIN).
    if any(k[3] == "flashmq" for k in runs):
        for sc, qos, need in (("fanin", 1, 1.2), ("fanin", 0, 1.5), ("fanout", 0, 1.5), ("fanout", 1, 1.5)):
            r = ratio(runs, (sc, "tcp", qos, "warden"), (sc, "tcp", qos, "flashmq"), "msg_per_s")
            check(f"{sc} QoS {qos} ≥ {need}× FlashMQ", r, r is not None and r >= need,
                  f"{r:.2f}×" if r else "")
        r = ratio(runs, ("fanin", "tcp", 1, "warden"), ("fanin", "tcp", 1, "flashmq"),
                  "broker_cpu_us_per_msg")
        check("fan-in QoS 1 broker CPU/msg ≤ FlashMQ", r, r is not None and r <= 1,
              f"{r:.2f}× FlashMQ's" if r else "")
        r = ratio(runs, ("idle", "mtls", None, "warden"), ("idle", "mtls", None, "flashmq"), "rss_kb_per_conn")
        check("idle mTLS RSS/conn ≤ FlashMQ", r, r is not None and r <= 1, f"{r:.2f}× FlashMQ's" if r else "")
    # The ACL's cost is judged on instruction counts (bench/acl-cost.sh):
    # msg/s of two runs on a shared 2-core machine spread by ±20-30%, far
    # more than the 5% asked about. The msg/s ratio is shown beside it.
    acl = acl_cost_rows()
    for sc in ("fanin", "fanout"):
        for qos in (0, 1):
            cost = acl.get((sc, qos))
            check(f"ACL cost {sc} QoS {qos} < 5% (instructions in the decision points, callgrind)",
                  cost, cost is not None and cost < 5, f"{cost:+.2f}%" if cost is not None else "")
            r = ratio(runs, (sc, "tcp", qos, "warden"), (sc, "tcp", qos, "warden-allowall"), "msg_per_s")
            if r is not None:
                rows.append(f"| msg/s with the ACL vs allow-all, {sc} QoS {qos} (informational) | "
                            f"{(r - 1) * 100:+.1f}% | – |")
    return ["| target | measured (medians) | holds |", "|---|---|---|"] + rows


def render(runs, machine):
    out = [BEGIN, "", "### Machine", "", "```", machine.strip(), "```", ""]
    out += ["### Targets (issue 5)", ""] + target_rows(runs) + [""]
    for scenario, title, cols in SECTIONS:
        rows = table(runs, scenario, cols)
        if rows:
            out += [f"### {title}", "", "Median (min–max) over the runs.", ""] + rows + [""]
    out.append(END)
    return "\n".join(out)


def main():
    if sys.argv[1:2] == ["--durability"]:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import durability_report

        durability_report.write(*sys.argv[2:5])
        return
    results, machine_path, doc_path = sys.argv[1:4]
    runs = load(results)
    section = render(runs, open(machine_path).read())
    try:
        doc = open(doc_path).read()
    except FileNotFoundError:
        doc = f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        doc = head + section + tail
    else:
        doc = doc.rstrip() + "\n\n" + section + "\n"
    open(doc_path, "w").write(doc)


if __name__ == "__main__":
    main()
