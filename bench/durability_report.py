#!/usr/bin/env python3
"""Turns persist.sh's JSON lines into the "Durability" section of
docs/benchmarks.md: fan-in QoS 1 into a persistent subscriber (medians with
min-max), restart time with many persisted sessions, disk bytes per queued
message, and issue 10's targets checked against the medians.

usage: summarize.py --durability RESULTS.jsonl MACHINE.txt BENCHMARKS.md
The text between the durability markers is replaced; without them the
section goes in before "## Reading the results" (or at the end).
"""

import json
import statistics
from collections import defaultdict

BEGIN = "<!-- durability:begin -->"
END = "<!-- durability:end -->"
BROKERS = ["warden-none", "warden-periodic", "warden-sync", "mosquitto-persist"]
HEAD = ["Warden `none`", "Warden `periodic`", "Warden `sync`", "Mosquitto `persistence true`"]
TITLE = "## Durability (issue 10)"


def load(path):
    """Runs by (scenario, broker). The `offline` runs of the disk test (one
    session) are told apart from the restart test's as `offline-disk`."""
    runs = defaultdict(list)
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            sc = r["scenario"]
            if sc == "offline" and r.get("sessions", 0) <= 1:
                if not r.get("msgs"):
                    continue
                sc = "offline-disk"
            runs[(sc, r["broker"])].append(r)
    return runs


def vals(rs, field):
    return [r[field] for r in rs if r.get(field) is not None]


def med(rs, field):
    v = vals(rs, field)
    return statistics.median(v) if v else None


def fmt(x, digits):
    return f"{{:,.{digits}f}}".format(x)


def cell(rs, field, digits=0, scale=1.0):
    v = [x * scale for x in vals(rs, field)]
    if not v:
        return "–"
    m = fmt(statistics.median(v), digits)
    return m if len(v) == 1 else f"{m} ({fmt(min(v), digits)}–{fmt(max(v), digits)})"


def overview(runs):
    """One row per measurement, one column per broker configuration."""
    restart_ok = lambda rs: [r for r in rs if r.get("msgs", 0) > 0]
    rows = [
        ("fan-in QoS 1 → persistent subscriber, msg/s (8 publishers, 64 B)",
         lambda b: cell(runs.get(("fanin", b), []), "msg_per_s")),
        ("  broker CPU µs/msg", lambda b: cell(runs.get(("fanin", b), []), "broker_cpu_us_per_msg", 2)),
        ("  drops (published − delivered)", lambda b: cell(runs.get(("fanin", b), []), "drops")),
        ("restart: start → ready line, s", lambda b: cell(runs.get(("restart", b), []), "ready_s", 2)),
        ("restart: start → first queued message, s",
         lambda b: cell(restart_ok(runs.get(("restart", b), [])), "secs", 2)),
        ("restart: queued message delivered",
         lambda b: delivered(runs.get(("restart", b), []))),
        ("RSS with the sessions loaded before stop, MiB",
         lambda b: cell(runs.get(("offline", b), []), "rss_kb", 0, 1 / 1024)),
        ("RSS after restart + resume, MiB",
         lambda b: cell(runs.get(("restart", b), []), "rss_kb", 0, 1 / 1024)),
        ("stop (SIGTERM → exit) with the sessions, s",
         lambda b: cell(runs.get(("shutdown", b), []), "secs", 2)),
        ("disk bytes per queued message (at stop)",
         lambda b: cell(runs.get(("disk", b), []), "bytes_per_msg", 1)),
        ("  after one more start + stop", lambda b: cell(settled(runs.get(("disk", b), [])), "v", 1)),
    ]
    out = ["| measurement | " + " | ".join(HEAD) + " |", "|---" * (len(HEAD) + 1) + "|"]
    for name, f in rows:
        out.append(f"| {name} | " + " | ".join(f(b) for b in BROKERS) + " |")
    return out


def settled(rs):
    """Bytes per message once the broker has started and stopped again (a
    write-ahead log left at stop is folded in by then)."""
    return [{"v": (r["bytes_after_restart"] - r["bytes_before"]) / r["msgs"]} for r in rs if r["msgs"]]


def delivered(rs):
    if not rs:
        return "–"
    got = sum(r.get("msgs", 0) for r in rs)
    present = sum(1 for r in rs if r.get("session_present"))
    return f"{got}/{len(rs)} (session present {present}/{len(rs)})"


def targets(runs):
    none = med(runs.get(("fanin", "warden-none"), []), "msg_per_s")
    per = med(runs.get(("fanin", "warden-periodic"), []), "msg_per_s")
    syn = med(runs.get(("fanin", "warden-sync"), []), "msg_per_s")
    mq = med(runs.get(("fanin", "mosquitto-persist"), []), "msg_per_s")
    out = ["| target | measured (medians) | met |", "|---|---|---|"]

    def row(name, value, ok, shown):
        out.append(f"| {name} | {shown if value is not None else 'not measured'} | "
                   f"{'–' if value is None else ('yes' if ok else '**no**')} |")

    r = per / none if per and none else None
    row("`periodic` ≥ 70% of `none` msg/s", r, r is not None and r >= 0.7, f"{r:.0%}" if r else "")
    r = per / mq if per and mq else None
    row("`periodic` ≥ 4× Mosquitto (`persistence true`)", r, r is not None and r >= 4,
        f"{r:.2f}×" if r else "")
    row("`sync` ≥ 50,000 msg/s", syn, syn is not None and syn >= 50_000,
        f"{syn:,.0f} msg/s" if syn else "")
    return out


def restart_table(runs):
    keys = [b for b in BROKERS if ("offline", b) in runs or ("restart", b) in runs]
    if not keys:
        return []
    out = ["| broker | sessions | sessions made/s | queued msg/s | RSS loaded MiB | stop s | "
           "ready s | CONNACK s | first message s | RSS after resume MiB |",
           "|---" * 10 + "|"]
    for b in keys:
        off, rs = runs.get(("offline", b), []), runs.get(("restart", b), [])
        out.append(f"| {b} | {cell(off, 'sessions')} | {cell(off, 'connects_per_s')} | "
                   f"{cell(off, 'msg_per_s')} | {cell(off, 'rss_kb', 0, 1 / 1024)} | "
                   f"{cell(runs.get(('shutdown', b), []), 'secs', 2)} | {cell(rs, 'ready_s', 2)} | "
                   f"{cell(rs, 'connack_s', 2)} | {cell([r for r in rs if r.get('msgs')], 'secs', 2)} | "
                   f"{cell(rs, 'rss_kb', 0, 1 / 1024)} |")
    notes = sorted({r["note"] for b in keys for r in runs.get(("restart", b), []) if r.get("note")})
    return out + [""] + [f"Note from the runs: {n}" for n in notes]


def disk_table(runs):
    keys = [b for b in BROKERS if ("disk", b) in runs]
    if not keys:
        return []
    out = ["| broker | messages | payload B | queued msg/s | bytes, session only | "
           "after queueing + stop | after one more start + stop | bytes per message (at stop; "
           "after one more start + stop) |", "|---" * 8 + "|"]
    for b in keys:
        rate = cell(runs.get(("offline-disk", b), []), "msg_per_s")
        for r in runs[("disk", b)]:
            out.append(f"| {b} | {r['msgs']:,} | {r['payload']} | {rate} | {r['bytes_before']:,} | "
                       f"{r['bytes_after']:,} | {r['bytes_after_restart']:,} | {r['bytes_per_msg']:,.1f}; "
                       f"{(r['bytes_after_restart'] - r['bytes_before']) / r['msgs']:,.1f} |")
    return out


def fanin_table(runs):
    out = ["| broker | runs | msg/s delivered | broker CPU µs/msg | client CPU s | drops |",
           "|---" * 6 + "|"]
    for b in BROKERS:
        rs = runs.get(("fanin", b), [])
        if rs:
            out.append(f"| {b} | {len(rs)} | {cell(rs, 'msg_per_s')} | "
                       f"{cell(rs, 'broker_cpu_us_per_msg', 2)} | {cell(rs, 'client_cpu_s', 2)} | "
                       f"{cell(rs, 'drops')} |")
    return out


def render(runs, machine):
    out = [BEGIN, "", "Written by `bench/persist.sh` (raw runs: `bench/last-persist.jsonl`).", "",
           "### Machine", "", "```", machine.strip(), "```", "",
           "### Targets (issue 10)", ""] + targets(runs) + [""]
    out += ["### Overview", "", "Median (min–max) over the runs; – where a configuration was "
            "not measured (`none` stores nothing, so it has no restart or disk figures).", ""]
    out += overview(runs) + [""]
    out += ["### Fan-in QoS 1 into a persistent subscriber", "",
            "8 publishers (QoS 1, 500 in flight each, 64-byte payloads) → 1 subscriber "
            "`bench/+/t` with clean session 0, so every message is bound to a persistent "
            "session; users, ACL and queue limits as in the main comparison.", ""]
    out += fanin_table(runs) + [""]
    rt = restart_table(runs)
    if rt:
        out += ["### Restart with persisted sessions", "",
                "Each session (anonymous, clean session 0) subscribed to its own topic and got "
                "one QoS 1 message while offline; then SIGTERM, and per restart: seconds from "
                "the process start to the broker's ready log line (Warden: `listening on`; "
                "Mosquitto: `running`), to CONNACK of a resumed session and to its queued message.",
                ""] + rt + [""]
    dt = disk_table(runs)
    if dt:
        out += ["### Disk bytes per queued message", "",
                "QoS 1 messages queued to one offline persistent session; Warden: `du -sb "
                "data/state`, Mosquitto: size of `mosquitto.db` (written at stop).", ""] + dt + [""]
    out.append(END)
    return "\n".join(out)


def write(results, machine_path, doc_path):
    section = render(load(results), open(machine_path).read())
    doc = open(doc_path).read()
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        doc = head + section + rest.split(END, 1)[1]
    elif "## Reading the results" in doc:
        head, tail = doc.split("## Reading the results", 1)
        doc = head + TITLE + "\n\n" + section + "\n\n## Reading the results" + tail
    else:
        doc = doc.rstrip() + "\n\n" + TITLE + "\n\n" + section + "\n"
    open(doc_path, "w").write(doc)
