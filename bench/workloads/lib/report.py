#!/usr/bin/python3
"""Table and plots of `make bench-workloads`.

Usage: report.py RESULTS_DIR   (default bench/results)

Reads RESULTS_DIR/workloads/NAME.json (summaries written by
ftsync_workload_eval) and NAME-series.json.gz (per-epoch series), writes
  RESULTS_DIR/workloads.txt       the table (also printed)
  RESULTS_DIR/workloads.json      every workload's summary in one file
  RESULTS_DIR/workloads/NAME-bytes.png   end-of-epoch bytes over time
  RESULTS_DIR/workloads/pause-cdf.png    pause CDF per workload and epoch
Plots need python3-matplotlib (Debian); without it only the text and JSON.
"""
import glob
import gzip
import json
import os
import sys
from datetime import datetime, timezone

# Configurations drawn in the per-epoch plots (others are in the table).
PLOT_CONFIGS = ["remus", "remus-xor-rle", "xbzrle", "runs", "hash-64", "runs+zstd-1",
                "spec-history", "spec-history+runs", "spec-history+runs+zstd-1", "remus+zlib-1"]


def load(res):
    out = []
    for path in sorted(glob.glob(os.path.join(res, "workloads", "*.json"))):
        if path.endswith("-series.json"):
            continue
        with open(path) as f:
            out.append(json.load(f))
    return out


def kb(x):
    return x / 1024.0


def table(workloads):
    lines = []
    w = lines.append
    w("ftsync memory-sync configurations on real workloads (make bench-workloads)")
    w("Bytes per epoch sent at the epoch's end (what the pause and the output")
    w("release wait for), factor = Remus baseline bytes / these bytes (sums over the")
    w("run), total = end + speculative bytes, CPU = encode (+compress) thread CPU per")
    w("epoch, xcopy = that CPU / the staging memcpy of the same pages in the same run;")
    w("tot/own (speculative only) = total / the same encoding without speculation")
    w("(the policies' budget is 1.2 for history); hits = shadow store (or cache) hits.")
    w("Pause = stop + dirty-log harvest + staging copy + device state save + cont")
    w("(measured at every epoch end of the live run; the same for every")
    w("configuration whose pages are staged at the end).")
    for wl in workloads:
        run = wl["run"]
        w("")
        w("=" * 100)
        w("%s: %s" % (wl["workload"], wl.get("description", "")))
        w("  guest %d MiB, %s; %.1f s of guest time evaluated (%s), %d ticks (nominal %.0f ms);"
          % (run.get("ram_mb", 0), run.get("qemu", ""), run["guest_s"], run.get("end_reason", ""),
             run["ticks"], run["tick_ms"]))
        w("  guest clock: %s (%.1f s); tick %.2f ms of guest time on average; device state save %.1f ms mean"
          % (run.get("guest_clock", "?"), run.get("guest_s_jiffies", run["guest_s"]),
             run.get("tick_run_ms_mean", 0), run.get("device_state_save_ms_mean", 0)))
        w("  shadow stores %d MiB each; decoding checked on %d pages, %d failures; evaluator %.0f s wall"
          % (run["shadow_budget_bytes"] >> 20, run["verify_checked"], run["verify_failures"],
             run.get("eval_wall_s", 0)))
        keys = ("tps", "MB/sec", "delivered", "latency average", "mailboxes", "load ran")
        shown = [l for l in run.get("guest_log", []) if any(k in l for k in keys)]
        for line in shown[-4:]:
            w("  " + line)
        for h in wl["horizons"]:
            p = h["pause_ms"]
            w("")
            w("  epoch %d ms (measured %.1f ms of guest time): %d epochs, dirty pages/epoch mean %.0f (max %d);"
              % (h["epoch_ms"], h.get("guest_ms_per_epoch", 0), h["epochs"],
                 h["dirty_pages_per_epoch"]["mean"], h["dirty_pages_per_epoch"]["max"]))
            w("    pause p50 %.2f ms, p90 %.2f ms, p99 %.2f ms (staging copy p50 %.2f ms)"
              % (p["p50"], p["p90"], p["p99"], p["copy_p50"]))
            w("  %-30s %11s %8s %11s %8s %8s %10s %7s %5s" %
              ("configuration", "end KiB/ep", "factor", "total KiB", "tot/base", "tot/own",
               "CPU us/ep", "xcopy", "hits"))
            for c in h["configs"]:
                hit = c.get("shadow", {}).get("hit_rate", c.get("cache_hit_rate"))
                own = c.get("total_vs_nonspec")
                w("  %-30s %11.1f %8.2f %11.1f %8.2f %8s %10.0f %7.2f %5s" % (
                    c["config"], kb(c["end_bytes_per_epoch"]["mean"]), c["end_factor"],
                    kb(c["total_bytes_per_epoch"]), c["total_vs_baseline"],
                    "" if own is None else "%.2f" % own,
                    c["encode_cpu_us_per_epoch"]["mean"], c["cpu_vs_memcpy"],
                    "" if hit is None else "%.2f" % hit))
    # Headline: the paper's three numbers per workload at each epoch length.
    w("")
    w("=" * 100)
    w("Headline: end-of-epoch bytes, factor against Remus (best configuration of each kind;")
    w("speculative ones with total bytes within 1.2x of the same encoding without speculation)")
    w("  %-11s %5s %22s %22s %22s %22s" % ("workload", "epoch", "fine-grained", "+compression",
                                            "speculative", "combined"))

    def best(h, pred):
        cands = [c for c in h["configs"] if pred(c)]
        if not cands:
            return "-"
        c = max(cands, key=lambda c: c["end_factor"])
        return "%s %.1fx" % (c["config"], c["end_factor"])

    for wl in workloads:
        for h in wl["horizons"]:
            fine = lambda c: (not c["speculative"] and not c["compressor"] and
                              c["config"].split("-")[0] in ("blocks", "runs", "hash"))
            comp = lambda c: not c["speculative"] and c["compressor"] and c["config"].startswith("runs")
            # Speculative ones only within the 1.2x total-bytes bound (against
            # the same encoding without speculation).
            inb = lambda c: c.get("total_vs_nonspec", 9) <= 1.2
            spec = lambda c: c["speculative"] and c["config"].count("+") == 0 and inb(c)
            comb = lambda c: c["speculative"] and c["config"].count("+") >= 1 and inb(c)
            w("  %-11s %5d %22s %22s %22s %22s" % (wl["workload"], h["epoch_ms"], best(h, fine),
                                                   best(h, comp), best(h, spec), best(h, comb)))
    return "\n".join(lines) + "\n"


def plots(res, workloads):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report.py: python3-matplotlib missing, no plots", file=sys.stderr)
        return []
    made = []
    pauses = {}
    for wl in workloads:
        name = wl["workload"]
        path = os.path.join(res, "workloads", name + "-series.json.gz")
        if not os.path.exists(path):
            continue
        with gzip.open(path, "rt") as f:
            series = json.load(f)
        hs = series["horizons"]
        fig, axes = plt.subplots(len(hs), 1, figsize=(11, 3.2 * len(hs)), squeeze=False)
        for ax, h in zip(axes[:, 0], hs):
            ms = h["epoch_ms"]
            names = [n for n in PLOT_CONFIGS if n in h["configs"]]
            # x: the guest time at each epoch's end (measured), else nominal.
            gms = h.get("guest_ms") or [ms] * len(h["dirty_pages"])
            xs, t = [], 0.0
            for g in gms:
                t += g
                xs.append(t / 1000.0)
            for n in names:
                ys = h["configs"][n]["end_bytes"]
                ax.plot(xs[:len(ys)], [max(y / 1024.0, 0.1) for y in ys], label=n, linewidth=0.7)
            ax.set_yscale("log")
            ax.set_title("%s: end-of-epoch bytes per epoch, %d ms epochs" % (name, ms), fontsize=10)
            ax.set_xlabel("guest time under evaluation (s)")
            ax.set_ylabel("KiB per epoch (floor 0.1)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7, ncol=4, loc="upper right")
            pauses[(name, ms)] = h["pause_ms"]
        fig.tight_layout()
        out = os.path.join(res, "workloads", name + "-bytes.png")
        fig.savefig(out, dpi=90)
        plt.close(fig)
        made.append(out)
    if pauses:
        fig, ax = plt.subplots(figsize=(8, 5))
        for (name, ms), v in sorted(pauses.items()):
            if not v:
                continue
            v = sorted(v)
            ax.plot(v, [(i + 1) / len(v) for i in range(len(v))], label="%s %d ms" % (name, ms))
        ax.set_xlabel("guest pause per epoch (ms): stop + harvest + staging copy + device state + cont")
        ax.set_xscale("log")
        ax.set_ylabel("fraction of epochs")
        ax.set_title("Pause CDF (QEMU/TCG, measured in the live runs)", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        out = os.path.join(res, "workloads", "pause-cdf.png")
        fig.savefig(out, dpi=90)
        plt.close(fig)
        made.append(out)
    return made


def main():
    res = sys.argv[1] if len(sys.argv) > 1 else "bench/results"
    workloads = load(res)
    if not workloads:
        print("report.py: no results in %s/workloads" % res, file=sys.stderr)
        return 1
    text = table(workloads)
    sys.stdout.write(text)
    with open(os.path.join(res, "workloads.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(res, "workloads.json"), "w") as f:
        json.dump({"generated_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "workloads": workloads}, f, indent=1)
        f.write("\n")
    for p in plots(res, workloads):
        print("report.py: wrote %s" % p, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
