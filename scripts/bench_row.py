"""Formats the median of several `ironclad --json bench append` runs (JSON
lines on stdin) as one Markdown table row for BENCHMARKS.md."""
import json
import sys

name, flags = sys.argv[1], sys.argv[2]
runs = sorted((json.loads(l) for l in sys.stdin if l.strip()), key=lambda r: r["events_per_s"])
m = runs[len(runs) // 2]
rates = ", ".join("%.0fk" % (r["events_per_s"] / 1000) for r in runs)
if m["baseline_events_per_s"]:
    base = "%.0f/s, **%.0f×**" % (m["baseline_events_per_s"], m["ratio_vs_baseline"])
else:
    base = "–"
print("| %s | `%s` | **%.0fk** (%s) | %.2f | %.2f | %.2f | %.0f | %s |" % (
    name, flags, m["events_per_s"] / 1000, rates, m["ack_p50_ms"], m["ack_p99_ms"],
    m["ack_max_ms"], m["peak_rss_mib"], base))
