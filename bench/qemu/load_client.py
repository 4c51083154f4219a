#!/usr/bin/python3
"""The throughput benchmark's client: N TCP connections to the guest's
counterd, each a closed loop (send "INCR key", wait for the answer, send the
next). Counts the answers and their latencies inside a measurement window
that starts after a warm-up.

Each connection has its own key, so every answer must be the previous one
plus one; anything else counts as an error (a lost or repeated state change,
or an answer that is not an INCR answer).

Usage: load_client.py HOST PORT CONNECTIONS WARMUP_S SECONDS OUTJSON
Writes to OUTJSON: answers, seconds, requests_per_s, latency_ms (median,
p99 by nearest rank, mean, max), errors, connections, client_cpu_fraction.
"""
import json
import math
import os
import selectors
import socket
import statistics
import sys
import time


def percentile(sorted_values, q):
    """Nearest-rank percentile of an ascending list (q in (0, 1])."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), math.ceil(q * len(sorted_values))))
    return sorted_values[rank - 1]


def connect(host, port, deadline):
    while True:
        try:
            s = socket.create_connection((host, port), timeout=2)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            return s
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main():
    host, port, nconn = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    warmup, seconds, out = float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
    tag = "b%x" % (os.getpid() & 0xffff)
    sel = selectors.DefaultSelector()
    conns = []
    t_connect = time.monotonic()
    for i in range(nconn):
        s = connect(host, port, t_connect + 30)
        c = {"sock": s, "key": b"%s-%d" % (tag.encode(), i), "last": 0, "sent": 0.0, "buf": b""}
        conns.append(c)
        sel.register(s, selectors.EVENT_READ, c)
    start = time.monotonic()
    cpu0 = time.process_time()
    t_begin = start + warmup
    t_end = t_begin + seconds
    for c in conns:
        c["sent"] = time.monotonic()
        c["sock"].sendall(b"INCR " + c["key"] + b"\n")
    latencies = []
    errors = 0
    answers_total = 0
    while True:
        now = time.monotonic()
        if now >= t_end:
            break
        for key, _ in sel.select(timeout=min(0.5, t_end - now)):
            c = key.data
            try:
                chunk = c["sock"].recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                raise SystemExit("load_client: the guest closed a connection")
            c["buf"] += chunk
            while b"\n" in c["buf"]:
                line, c["buf"] = c["buf"].split(b"\n", 1)
                t = time.monotonic()
                parts = line.split()
                if len(parts) == 2 and parts[0] == c["key"] and parts[1].isdigit():
                    n = int(parts[1])
                    if n != c["last"] + 1:
                        errors += 1
                    c["last"] = n
                else:
                    errors += 1
                answers_total += 1
                if t_begin <= t < t_end:
                    latencies.append(t - c["sent"])
                c["sent"] = t
                c["sock"].sendall(b"INCR " + c["key"] + b"\n")
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - start
    for c in conns:
        c["sock"].close()
    latencies.sort()
    ms = [x * 1e3 for x in latencies]
    result = {
        "connections": nconn,
        "warmup_s": warmup,
        "seconds": seconds,
        "answers": len(ms),
        "answers_including_warmup": answers_total,
        "requests_per_s": len(ms) / seconds,
        "latency_ms": {
            "median": statistics.median(ms) if ms else None,
            "p99": percentile(ms, 0.99),
            "mean": sum(ms) / len(ms) if ms else None,
            "max": ms[-1] if ms else None,
        },
        "errors": errors,
        # The client's own CPU time / wall time: near 1.0 means the client,
        # not the guest, limits the rate.
        "client_cpu_fraction": cpu / wall if wall > 0 else None,
    }
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
