#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Turns Google Benchmark JSON from the comparative allocator benchmark into Markdown tables
# (stdout), OUT_DIR/results.jsonl, OUT_DIR/w5.svg and, with --page, the section of that Markdown
# page (docs/PERFORMANCE.md) between `<!-- bench:begin -->` and `<!-- bench:end -->`.
# Usage: scripts/bench-report.py --out-dir build/bench [--page docs/PERFORMANCE.md --command CMD] IN.json...
# Always exits 0 once the report is written (it informs, it does not gate); 2 on bad input.
import argparse
import json
import math
import pathlib
import re
import statistics
import sys
from datetime import datetime
from xml.sax.saxutils import escape

BASELINE = "glibc"
W5_SIZES = [("W5_1k", 1e3), ("W5_10k", 1e4), ("W5_100k", 1e5), ("W5_1M", 1e6)]
GROWTH_LIMIT = 5.0

# Fragmentation rows in a fixed pool -> minimum utilization at the first failure
FRAGMENTATION = {
    "F_fill_small": 0.97,
    "F_fill_large": 0.97,
    "F_churn_small": 0.95,
    "F_churn_large": 0.95,
}

# workload -> short description, in canonical order
WORKLOADS = {
    "W1": "fixed-size churn, 64 B, live 10k",
    "W2": "mixed-size churn, 16 B..64 KiB, live 10k",
    "W3_warm": "arena, 1M objects, warm cycles",
    "W3_cold": "arena, cold first cycle",
    "W3c": "arena with 50% freed early",
    "W4": "aligned churn, 64 B..16 KiB, align 8..4096",
    **{name: f"live-set scaling, 16 B..4 KiB, live {name[3:]}" for name, _ in W5_SIZES},
    "W6_per_thread": "two threads doing W2, one instance per thread",
    "W6_shared": "two threads doing W2, one shared instance",
    "W7_vector": "pmr vector push_back growth",
    "W7_umap": "pmr unordered_map insert/erase",
    "W7_map": "pmr map insert/erase",
    "W7_boostmap": "boost::container::map",
    "W8": "arena loop: per-request pmr containers, release() after every request",
    "W8_remote": "release on another thread than the acquisition, 64 B, with 0/16/64 idle caches",
    "F_fill_small": "fragmentation: 64 MiB fixed pool, fill, 16..512 B",
    "F_fill_large": "fragmentation: 64 MiB fixed pool, fill, 4 KiB..256 KiB",
    "F_churn_small": "fragmentation: 64 MiB fixed pool, churn at half, then fill, 16..512 B",
    "F_churn_large": "fragmentation: 64 MiB fixed pool, churn at half, then fill, 4 KiB..256 KiB",
}

# W8 is judged against the resource it replaces, measured in the same run: no slower than
# std::pmr::unsynchronized_pool_resource, and at most ARENA_MAX_MEMORY times its memory by
# both measures (the upstream's high-water mark of bytes held, and the peak resident set
# growth of a fresh process).
ARENA_LOOP = "W8"
ARENA_REFERENCE = "std-unsync-pool"
ARENA_MAX_TIME = 1.00
ARENA_MAX_MEMORY = 1.10

# W8_remote (benchmarks/remote.bench.cpp): besides its ratio to glibc, a row with idle thread
# caches may take at most REMOTE_MAX_IDLE times the row without them: a release's cost must not
# grow with the number of threads.
REMOTE = "W8_remote"
REMOTE_NO_IDLE = "bufpool-caches"
REMOTE_MAX_IDLE = 1.5

# Workloads whose time is judged against another contestant of the same run instead of glibc:
# workload -> (that contestant, max ratio of time to it, max peak/live or None).
REFERENCE_TARGETS = {
    "W3_warm": ("boost-monotonic-buffer", 2.00, 1.05),  # an arena close to a bump pointer
    "W6_shared": ("tcmalloc", 1.50, None),
}

# workload -> (max ratio to glibc, max peak/live or None); F_* and W5 growth are handled apart
TARGETS = {
    "W1": (0.60, None),
    "W2": (0.55, 1.10),
    "W3c": (0.28, 1.15),
    "W4": (0.25, 1.30),
    **{name: (0.30, None) for name, _ in W5_SIZES},
    "W6_per_thread": (0.50, None),
    REMOTE: (1.00, None),
    "W7_umap": (0.60, None),
    "W7_map": (0.90, None),
    "W7_vector": (0.92, None),
    "W7_boostmap": (0.85, None),
}

# Google Benchmark appends these to a run name (e.g. "/real_time", "/threads:2").
GB_SUFFIX = re.compile(r"^(real_time|process_time|manual_time|[a-z_]+:[^/]*)$")

PALETTE = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#e6550d", "#7b4173", "#3182bd",
    "#31a354", "#843c39",
]


def fail(message):
    print(f"bench-report: {message}", file=sys.stderr)
    sys.exit(2)


def warn(message):
    print(f"bench-report: warning: {message}", file=sys.stderr)


def is_bufpool(contestant):
    return contestant.startswith("bufpool")


def load_inputs(paths):
    """Returns (runs, contexts): runs maps (workload, contestant) to its collected entries."""
    runs, contexts = {}, []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            fail(f"input file not found: {path}")
        except (OSError, UnicodeDecodeError) as e:
            fail(f"cannot read {path}: {e}")
        except json.JSONDecodeError as e:
            fail(f"{path} is not valid JSON: {e}")
        if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
            fail(f"{path} has no 'benchmarks' array (not Google Benchmark JSON output?)")
        contexts.append(data.get("context") or {})
        for entry in data["benchmarks"]:
            run_name = entry.get("run_name") or entry.get("name", "")
            parts = run_name.split("/")
            while len(parts) > 2 and GB_SUFFIX.match(parts[-1]):
                parts.pop()
            if len(parts) != 2 or not all(parts):
                warn(f"{path}: skipping '{run_name}' (expected <workload>/<contestant>)")
                continue
            run = runs.setdefault(tuple(parts), {"iterations": [], "errors": [], "median": None})
            if entry.get("error_occurred"):
                run["errors"].append(entry.get("error_message") or "error")
            elif entry.get("run_type", "iteration") == "iteration":
                run["iterations"].append(entry)
            elif entry.get("aggregate_name") == "median" and run["median"] is None:
                run["median"] = entry
    return runs, contexts


def counter(entry, key):
    value = entry.get(key)
    return float(value) if isinstance(value, (int, float)) else 0.0


def summarize(workload, contestant, run):
    """Per-(workload, contestant) numbers, before the glibc ratio and targets are known."""
    row = {"workload": workload, "contestant": contestant, "ns_per_op": None,
           "ratio_vs_glibc": None, "peak_over_live": None, "spread_pct": None,
           "repetitions": 0}
    if workload in FRAGMENTATION:
        row["utilization"] = None
    if workload == ARENA_LOOP:
        row.update({"rss_bytes": None, "peak_bytes": None, "ratio_vs_unsync": None,
                    "peak_vs_unsync": None, "rss_vs_unsync": None})
    entries = [e for e in run["iterations"] if isinstance(e.get("ns_per_op"), (int, float))]
    if entries:
        ns = [float(e["ns_per_op"]) for e in entries]
        row["ns_per_op"] = statistics.median(ns)
        if row["ns_per_op"] > 0:
            row["spread_pct"] = (max(ns) - min(ns)) / row["ns_per_op"] * 100
        row["repetitions"] = len(entries)
    elif isinstance((run["median"] or {}).get("ns_per_op"), (int, float)):
        entries = [run["median"]]
        row["ns_per_op"] = counter(run["median"], "ns_per_op")
        row["repetitions"] = int(run["median"].get("repetitions") or 0)
    else:
        row["error"] = run["errors"][0] if run["errors"] else "no ns_per_op counter"
        return row
    peak = statistics.median(counter(e, "peak_bytes") for e in entries)
    live = statistics.median(counter(e, "live_bytes") for e in entries)
    if peak > 0 and live > 0:
        row["peak_over_live"] = peak / live
    if workload == ARENA_LOOP:
        row["peak_bytes"] = peak if peak > 0 else None
        rss = [float(e["rss_bytes"]) for e in entries if isinstance(e.get("rss_bytes"), (int, float))]
        row["rss_bytes"] = statistics.median(rss) if rss else None
    if workload in FRAGMENTATION:
        values = [float(e["utilization"]) for e in entries
                  if isinstance(e.get("utilization"), (int, float))]
        row["utilization"] = statistics.median(values) if values else None
    return row


def target_text(workload, ratio_vs_reference=None):
    if workload in FRAGMENTATION:
        return f"util ≥{FRAGMENTATION[workload]:.2f}"
    if workload == ARENA_LOOP:
        return f"≤{ARENA_MAX_TIME:.2f}× time, ≤{ARENA_MAX_MEMORY:.2f}× peak and RSS of {ARENA_REFERENCE}"
    if workload in REFERENCE_TARGETS:
        reference, max_ratio, max_pol = REFERENCE_TARGETS[workload]
        measured = f" (is {fmt_ratio(ratio_vs_reference)})" if ratio_vs_reference else ""
        return (f"≤{max_ratio:.2f}× {reference}{measured}"
                + (f", ≤{max_pol:.2f}× live" if max_pol else ""))
    if workload not in TARGETS:
        return None
    max_ratio, max_pol = TARGETS[workload]
    text = f"≤{max_ratio:.2f}×"
    if workload == REMOTE:
        text += f", ≤{REMOTE_MAX_IDLE:.2f}× {REMOTE_NO_IDLE}"
    return text + (f", ≤{max_pol:.2f}× live" if max_pol is not None else "")


def judge(row):
    """True / False, or None when there is no target or its main measure is unknown."""
    workload = row["workload"]
    if "error" in row:
        return None
    if workload in FRAGMENTATION:
        util = row.get("utilization")
        return None if util is None else util >= FRAGMENTATION[workload]
    if workload == ARENA_LOOP:
        ratios = [row["ratio_vs_unsync"], row["peak_vs_unsync"], row["rss_vs_unsync"]]
        if any(r is None for r in ratios):
            return None
        return (ratios[0] <= ARENA_MAX_TIME and ratios[1] <= ARENA_MAX_MEMORY
                and ratios[2] <= ARENA_MAX_MEMORY)
    if workload in REFERENCE_TARGETS:
        _, max_ratio, max_pol = REFERENCE_TARGETS[workload]
        ratio = row.get("ratio_vs_reference")
    elif workload in TARGETS:
        max_ratio, max_pol = TARGETS[workload]
        ratio = row["ratio_vs_glibc"]
    else:
        return None
    if ratio is None:
        return None
    if ratio > max_ratio:
        return False
    if workload == REMOTE and row.get("ratio_vs_no_idle") is not None:
        if row["ratio_vs_no_idle"] > REMOTE_MAX_IDLE:
            return False
    if max_pol is None:
        return True
    pol = row["peak_over_live"]
    return pol is not None and pol <= max_pol  # unknown memory fails only a met ratio


def build_rows(runs):
    workloads = list(WORKLOADS)
    workloads += [w for w, _ in runs if w not in WORKLOADS and w not in workloads]
    by_workload = {}
    for workload in workloads:
        rows = [summarize(w, c, run) for (w, c), run in runs.items() if w == workload]
        if not rows:
            continue
        base = next((r for r in rows if r["contestant"] == BASELINE), None)
        base_ns = base["ns_per_op"] if base and "error" not in base else None
        ref = next((r for r in rows if r["contestant"] == ARENA_REFERENCE and "error" not in r),
                   None) if workload == ARENA_LOOP else None
        no_idle = next((r for r in rows if r["contestant"] == REMOTE_NO_IDLE and "error" not in r),
                       None) if workload == REMOTE else None
        reference_name = REFERENCE_TARGETS.get(workload, (None,))[0]
        reference = next((r for r in rows if r["contestant"] == reference_name and "error" not in r
                          and r["ns_per_op"]), None)
        for row in rows:
            if workload not in FRAGMENTATION and base_ns and row["ns_per_op"] is not None:
                row["ratio_vs_glibc"] = row["ns_per_op"] / base_ns
            if ref is not None and "error" not in row:
                for key, ref_key in (("ratio_vs_unsync", "ns_per_op"),
                                     ("peak_vs_unsync", "peak_bytes"),
                                     ("rss_vs_unsync", "rss_bytes")):
                    mine, theirs = row[ref_key], ref[ref_key]
                    row[key] = mine / theirs if mine is not None and theirs else None
            if no_idle is not None and "error" not in row and no_idle["ns_per_op"]:
                row["ratio_vs_no_idle"] = row["ns_per_op"] / no_idle["ns_per_op"]
            if reference is not None and row["ns_per_op"] is not None:
                row["ratio_vs_reference"] = row["ns_per_op"] / reference["ns_per_op"]
            if is_bufpool(row["contestant"]):
                row["target"] = target_text(workload, row.get("ratio_vs_reference"))
                row["meets"] = judge(row)
        by_workload[workload] = rows
    return by_workload


def growth_rows(by_workload):
    """W5 1M/1k growth of every bufpool contestant with any W5 data."""
    contestants = []
    for name, _ in W5_SIZES:
        for row in by_workload.get(name, []):
            if is_bufpool(row["contestant"]) and row["contestant"] not in contestants:
                contestants.append(row["contestant"])
    result = []
    for contestant in contestants:
        ns = {}
        for name in ("W5_1k", "W5_1M"):
            row = next((r for r in by_workload.get(name, []) if r["contestant"] == contestant), None)
            ns[name] = row["ns_per_op"] if row and "error" not in row else None
        growth = ns["W5_1M"] / ns["W5_1k"] if ns["W5_1k"] and ns["W5_1M"] is not None else None
        result.append({"contestant": contestant, "ns_1k": ns["W5_1k"], "ns_1M": ns["W5_1M"],
                       "growth": growth,
                       "meets": None if growth is None else growth <= GROWTH_LIMIT})
    return result


# ---- formatting ----

def fmt_ns(ns):
    if ns is None:
        return "–"
    return f"{ns:.1f}" if ns < 100 else f"{ns:.0f}"


def fmt_ratio(value):
    return "–" if value is None else f"{value:.2f}×"


def fmt_spread(pct):
    if pct is None:
        return "–"
    return f"±{pct:.1f}%" if pct < 10 else f"±{pct:.0f}%"


def fmt_util(value):
    return "–" if value is None else f"{value:.3f}"


def fmt_meets(value):
    return {True: "yes", False: "NO", None: "–"}[value]


def sort_rows(workload, rows):
    def key(row):
        if "error" in row:
            return (2, 0.0, 0.0)
        if workload in FRAGMENTATION:
            util = row.get("utilization")
            return (0, -util, row["ns_per_op"]) if util is not None else (1, 0.0, 0.0)
        return (0, row["ns_per_op"], 0.0)
    return sorted(rows, key=key)


def heading(workload):
    return f"{workload} — {WORKLOADS.get(workload, 'unknown workload, no target')}"


LEFT_ALIGNED = {"contestant", "target", "meets"}


def markdown_table(header, body):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if h in LEFT_ALIGNED else "---:" for h in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


def ns_cell(row):
    return f"n/a ({row['error']})" if "error" in row else fmt_ns(row["ns_per_op"])


def fmt_mib(value):
    return "–" if value is None else f"{value / 2**20:.2f}"


def arena_table(rows, compact):
    """W8: time and both memory measures, as ratios to the resource it replaces."""
    header = ["contestant", "ns/op", "× unsync", "peak MiB", "× unsync", "RSS MiB", "× unsync"]
    header += ([] if compact else ["spread"]) + ["meets"]
    body = []
    for row in sort_rows(ARENA_LOOP, rows):
        if "error" in row:
            body.append([row["contestant"], ns_cell(row)] + ["–"] * (len(header) - 2))
            continue
        cells = [row["contestant"], ns_cell(row), fmt_ratio(row["ratio_vs_unsync"]),
                 fmt_mib(row["peak_bytes"]), fmt_ratio(row["peak_vs_unsync"]),
                 fmt_mib(row["rss_bytes"]), fmt_ratio(row["rss_vs_unsync"])]
        cells += [] if compact else [fmt_spread(row["spread_pct"])]
        cells += [fmt_meets(row.get("meets"))]
        body.append(cells)
    return markdown_table(header, body)


def full_table(workload, rows):
    if workload == ARENA_LOOP:
        return arena_table(rows, compact=False)
    header = ["contestant", "ns/op (median)", "spread", "× glibc", "peak/live"]
    header += ["utilization"] if workload in FRAGMENTATION else []
    header += ["target", "meets"]
    body = []
    for row in sort_rows(workload, rows):
        cells = [row["contestant"], ns_cell(row), fmt_spread(row["spread_pct"]),
                 fmt_ratio(row["ratio_vs_glibc"]), fmt_ratio(row["peak_over_live"])]
        cells += [fmt_util(row.get("utilization"))] if workload in FRAGMENTATION else []
        cells += [row.get("target") or "–", fmt_meets(row.get("meets"))]
        body.append(cells)
    return markdown_table(header, body)


def compact_table(workload, rows):
    """bufpool rows, glibc and the best other contestant (W8: every row)."""
    if workload == ARENA_LOOP:
        return arena_table(rows, compact=True)
    others = [r for r in sort_rows(workload, rows)
              if not is_bufpool(r["contestant"]) and r["contestant"] != BASELINE and "error" not in r]
    keep = {id(r) for r in rows if is_bufpool(r["contestant"]) or r["contestant"] == BASELINE}
    keep |= {id(others[0])} if others else set()
    header = ["contestant", "ns/op"]
    header += ["utilization"] if workload in FRAGMENTATION else ["× glibc"]
    header += ["peak/live", "meets"]
    body = []
    for row in sort_rows(workload, rows):
        if id(row) not in keep:
            continue
        cells = [row["contestant"], ns_cell(row)]
        cells += ([fmt_util(row.get("utilization"))] if workload in FRAGMENTATION
                  else [fmt_ratio(row["ratio_vs_glibc"])])
        cells += [fmt_ratio(row["peak_over_live"]), fmt_meets(row.get("meets"))]
        body.append(cells)
    return markdown_table(header, body)


def growth_table(growth):
    header = ["contestant", "ns/op at 1k", "ns/op at 1M", "growth 1M/1k", "target", "meets"]
    body = [[g["contestant"], fmt_ns(g["ns_1k"]), fmt_ns(g["ns_1M"]),
             "–" if g["growth"] is None else f"{g['growth']:.2f}×",
             f"≤{GROWTH_LIMIT:g}×", fmt_meets(g["meets"])] for g in growth]
    return markdown_table(header, body)


def report_sections(by_workload, growth, compact, level):
    """Markdown lines for every workload table, with the W5 growth table after the last W5 one."""
    lines = []
    last_w5 = max((i for i, w in enumerate(by_workload) if w.startswith("W5_")), default=None)
    for i, (workload, rows) in enumerate(by_workload.items()):
        lines += [f"{level} {heading(workload)}", ""]
        if workload == ARENA_LOOP:
            lines += [f"Peak: the upstream's high-water mark of bytes held (malloc's statistics "
                      f"for malloc); RSS: the peak resident set growth of a fresh process per "
                      f"run. Target for bufpool: {target_text(workload)}.", ""]
        lines += (compact_table if compact else full_table)(workload, rows)
        lines.append("")
        if i == last_w5 and growth:
            lines += [f"{level} W5 growth — ns/op at 1M live / at 1k live", ""]
            lines += growth_table(growth)
            lines.append("")
    return lines


# ---- SVG plot ----

def log_ticks(lo, hi):
    """Tick values between 10**lo and 10**hi: decades, plus 2 and 5 when the span is small."""
    steps = (1, 2, 5) if hi - lo <= 2 else (1,)
    return [m * 10 ** e for e in range(lo, hi + 1) for m in steps if m * 10 ** e <= 10 ** hi]


def w5_svg(by_workload, contestants):
    width, height = 900, 560
    left, right, top, bottom = 80, 230, 50, 70
    plot_w, plot_h = width - left - right, height - top - bottom
    series = []
    for contestant in contestants:
        points = []
        for name, size in W5_SIZES:
            row = next((r for r in by_workload.get(name, []) if r["contestant"] == contestant), None)
            if row and "error" not in row and row["ns_per_op"] and row["ns_per_op"] > 0:
                points.append((size, row["ns_per_op"], name[3:]))
        if points:
            series.append((contestant, points))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left + plot_w / 2}" y="28" text-anchor="middle" font-size="16" '
           f'font-weight="bold">W5: cost per alloc+free vs live-set size</text>']
    if not series:
        out.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" '
                   f'text-anchor="middle">no W5 data</text>')
        return "\n".join(out + ["</svg>"]) + "\n"

    all_ns = [ns for _, points in series for _, ns, _ in points]
    y_lo, y_hi = math.floor(math.log10(min(all_ns))), math.ceil(math.log10(max(all_ns)))
    if y_hi == y_lo:
        y_hi += 1
    x_pad = 0.15  # keeps the end markers off the frame
    x_lo, x_hi = math.log10(W5_SIZES[0][1]) - x_pad, math.log10(W5_SIZES[-1][1]) + x_pad

    def x_of(size):
        return left + (math.log10(size) - x_lo) / (x_hi - x_lo) * plot_w

    def y_of(ns):
        return top + plot_h - (math.log10(ns) - y_lo) / (y_hi - y_lo) * plot_h

    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" '
               f'fill="none" stroke="#333"/>')
    for value in log_ticks(y_lo, y_hi):
        y = y_of(value)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        label = f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    for name, size in W5_SIZES:
        x = x_of(size)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 18}" text-anchor="middle">{name[3:]}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 22}" text-anchor="middle">'
               f'live-set size (live allocations, log scale)</text>')
    out.append(f'<text x="20" y="{top + plot_h / 2}" text-anchor="middle" '
               f'transform="rotate(-90 20 {top + plot_h / 2})">ns per alloc+free (median, log scale)</text>')

    spacing = min(20.0, (height - top - 20) / len(series))
    legend_x = left + plot_w + 20
    for i, (contestant, points) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        stroke = 3 if is_bufpool(contestant) else 1.5
        name = escape(contestant)
        coords = " ".join(f"{x_of(size):.1f},{y_of(ns):.1f}" for size, ns, _ in points)
        out.append(f'<g stroke="{colour}" fill="{colour}">')
        out.append(f'<polyline points="{coords}" fill="none" stroke-width="{stroke}"/>')
        for size, ns, label in points:
            out.append(f'<circle cx="{x_of(size):.1f}" cy="{y_of(ns):.1f}" r="{stroke + 1.5}">'
                       f'<title>{name}, live {label}: {fmt_ns(ns)} ns</title></circle>')
        y = top + 10 + i * spacing
        out.append(f'<line x1="{legend_x}" y1="{y:.1f}" x2="{legend_x + 24}" y2="{y:.1f}" '
                   f'stroke-width="{stroke}"/>')
        out.append(f'<circle cx="{legend_x + 12}" cy="{y:.1f}" r="{stroke + 1}"/>')
        out.append(f'<text x="{legend_x + 32}" y="{y + 4:.1f}" stroke="none" fill="#000">{name}</text>')
        out.append("</g>")
    return "\n".join(out + ["</svg>"]) + "\n"


# ---- The results page (docs/PERFORMANCE.md) ----

def describe_machine(contexts):
    context = next((c for c in contexts if c), {})
    when = str(context.get("date", "an unknown date"))
    try:
        when = datetime.fromisoformat(when).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        pass
    details = []
    for key in ("cpu", "cpu_model", "cpu_name", "model_name"):
        if isinstance(context.get(key), str) and context[key]:
            details.append(context[key])
            break
    if context.get("num_cpus"):
        details.append(f"{context['num_cpus']} CPUs")
    if context.get("mhz_per_cpu"):
        details.append(f"{context['mhz_per_cpu']} MHz")
    host = context.get("host_name")
    machine = f"`{host}`" if host else "an unnamed host"
    return when, machine + (f" ({', '.join(details)})" if details else "")


def page_section(by_workload, growth, contexts, command, out_dir):
    when, machine = describe_machine(contexts)
    lines = [f"Generated by `{command}` on {when} on {machine}; "
             f"ratios are to glibc malloc measured in the same run.", ""]
    lines += report_sections(by_workload, growth, compact=True, level="###")
    lines.append(f"`{command}` also writes `{out_dir}/w5.svg`.")
    return lines


def update_page(path, section):
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except OSError as e:
        warn(f"cannot read {path}: {e}; page left alone")
        return
    lines = text.splitlines(keepends=True)
    stripped = [line.strip() for line in lines]
    if begin not in stripped or end not in stripped[stripped.index(begin) + 1:]:
        warn(f"{path} lacks '{begin}' ... '{end}' lines; page left alone")
        return
    first = stripped.index(begin)
    last = stripped.index(end, first + 1)
    newline = "\r\n" if lines[first].endswith("\r\n") else "\n"
    body = [line + newline for line in [""] + section + [""]]
    updated = "".join(lines[:first + 1] + body + lines[last:])
    if updated != text:
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(updated)


def main():
    parser = argparse.ArgumentParser(description="Report on allocator benchmark JSON output.")
    parser.add_argument("--out-dir", default="build/bench", help="where results.jsonl and w5.svg go")
    parser.add_argument("--page", "--readme", dest="page",
                        help="Markdown page whose bench:begin/end section is rewritten")
    parser.add_argument("--command", default="scripts/bench", help="command named on the page")
    parser.add_argument("inputs", nargs="+", help="Google Benchmark JSON files")
    args = parser.parse_args()

    runs, contexts = load_inputs(args.inputs)
    by_workload = build_rows(runs)
    growth = growth_rows(by_workload)

    lines = report_sections(by_workload, growth, compact=False, level="###")
    bufpool_verdicts = [r["meets"] for rows in by_workload.values() for r in rows
                        if is_bufpool(r["contestant"]) and r["meets"] is not None]
    bufpool_verdicts += [g["meets"] for g in growth if g["meets"] is not None]
    lines.append(f"bufpool rows meeting their target: {sum(bufpool_verdicts)} of {len(bufpool_verdicts)}")
    print("\n".join(lines))

    out_dir = pathlib.Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "results.jsonl", "w", encoding="utf-8") as f:
        for rows in by_workload.values():
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    contestants = list(dict.fromkeys(c for _, c in runs))
    (out_dir / "w5.svg").write_text(w5_svg(by_workload, contestants), encoding="utf-8")

    if args.page:
        update_page(args.page, page_section(by_workload, growth, contexts,
                                            args.command, args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
