#!/usr/bin/python3
"""The demo's client: sends INCR requests to the guest's counter service
without pause, and checks that the state it sees never goes back or skips:
every answer must be the previous answer plus one. It keeps one TCP
connection; only if that connection breaks does it reconnect (and says so).

Usage: client.py HOST PORT SECONDS KILLFILE OUTJSON
  SECONDS: the longest it runs; it stops earlier once KILLFILE.stop exists.
  KILLFILE: the demo writes the time (CLOCK_MONOTONIC ns) of each kill
  here, one line per kill; answers are counted per phase.
"""
import json
import os
import socket
import sys
import time


def main():
    host, port, seconds, killfile, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
    deadline = time.monotonic() + seconds
    last = None
    answers = before = after = lost = repeated = reconnects = 0
    first_after_kill = None
    per_kill = []  # per kill: answers after it (until the next), first answer's delay
    max_gap = 0.0
    prev_t = None
    sock = None
    buf = b""
    while time.monotonic() < deadline and not os.path.exists(killfile + ".stop"):
        if sock is None:
            try:
                sock = socket.create_connection((host, port), timeout=2)
                sock.settimeout(30)
                buf = b""
                if answers:
                    reconnects += 1
            except OSError:
                time.sleep(0.05)
                continue
        try:
            sock.sendall(b"INCR demo\n")
            while b"\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    raise OSError("closed")
                buf += chunk
        except OSError:
            sock.close()
            sock = None
            continue
        line, buf = buf.split(b"\n", 1)
        now = time.monotonic()
        parts = line.split()
        if len(parts) != 2 or parts[0] != b"demo":
            print("client: unexpected answer %r" % line, file=sys.stderr)
            continue
        n = int(parts[1])
        if last is not None:
            if n <= last:
                repeated += last - n + 1
            elif n > last + 1:
                lost += n - last - 1
        last = n
        answers += 1
        if prev_t is not None:
            max_gap = max(max_gap, now - prev_t)
        prev_t = now
        kills = []
        if os.path.exists(killfile):
            try:
                kills = [int(l) for l in open(killfile).read().split()]
            except ValueError:
                kills = []
        if kills:
            after += 1
            phase = len(kills) - 1
            while len(per_kill) <= phase:
                per_kill.append({"answers": 0, "first_answer_ms": None})
            per_kill[phase]["answers"] += 1
            if per_kill[phase]["first_answer_ms"] is None:
                per_kill[phase]["first_answer_ms"] = (time.clock_gettime_ns(time.CLOCK_MONOTONIC) - kills[-1]) / 1e6
            if first_after_kill is None:
                first_after_kill = time.clock_gettime_ns(time.CLOCK_MONOTONIC) - kills[0]
        else:
            before += 1
    json.dump({"answers": answers, "before_kill": before, "after_kill": after, "lost": lost,
               "repeated": repeated, "reconnects": reconnects, "last": last,
               "kill_to_first_answer_ms": None if first_after_kill is None else first_after_kill / 1e6,
               "after_each_kill": per_kill, "max_gap_ms": max_gap * 1000}, open(out, "w"))


if __name__ == "__main__":
    main()
