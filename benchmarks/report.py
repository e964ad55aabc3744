"""Print the README's benchmark tables (markdown) from benchmarks/results/*.json.

    python benchmarks/report.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def quality() -> list[str]:
    out = []
    for path in sorted(RESULTS.glob("quality_*.json")):
        q = json.loads(path.read_text())
        out += [f"**{q['dataset']}** ({q['metric']}, {q['steps']} steps at batch {q['batch_size']}, "
                f"{q['episodes']} evaluation episodes per seed; ![curve](benchmarks/results/{path.stem}.png))", "",
                "| method | score (mean ± std over seeds) | seeds |", "|---|---|---|"]
        out += [f"| {m} | {r['mean']:.1f}" + (f" ± {r['std']:.1f}" if r["seeds"] > 1 else "") + f" | {r['seeds']} |"
                for m, r in q["table"].items()]
        out.append("")
    return out


def speed() -> list[str]:
    s = load("speed_cpu.json")
    if s is None:
        return []
    peak = s["matmul_peak_gflops"]
    out = [f"Training steps/s on {s['machine']['cpu']} ({s['machine']['cores']} cores, torch "
           f"{s['machine']['torch']}, {s['machine']['date']}; measured fp32 matmul peak {peak:.0f} GFLOP/s):", "",
           "| step | batch | steps/s | vs d3rlpy IQL | GFLOP/step | % of fp32 peak | peak RSS MB |",
           "|---|---|---|---|---|---|---|"]
    names = {"full": "AlignIQL full (diffusion BC + critic), fp32", "full-bf16": "AlignIQL full, bf16 denoiser",
             "critic": "IQL critic only (V + twin Q + Polyak)", "d3rlpy": "d3rlpy IQL (V + Q + AWR actor)"}
    for row in s["rows"]:
        ref = next(r["steps_per_s"] for r in s["rows"] if r["kind"] == "d3rlpy" and r["batch_size"] == row["batch_size"])
        gf = f"{row['gflop_per_step']:.2f}" if "gflop_per_step" in row else "–"
        frac = f"{100 * row['achieved_gflops'] / peak:.0f}%" if "achieved_gflops" in row else "–"
        out.append(f"| {names[row['kind']]} | {row['batch_size']} | {row['steps_per_s']:.1f} | "
                   f"{row['steps_per_s'] / ref:.2f}x | {gf} | {frac} | {row['peak_rss_mb']:.0f} |")
    if "conversion_1m" in s:
        c = s["conversion_1m"]
        out += ["", f"Minari → training tensors for {c['transitions']:,} transitions ({c['episodes']} episodes): "
                    f"{c['seconds']:.2f} s."]
    return out


def latency() -> list[str]:
    lat = load("latency_cpu.json")
    if lat is None:
        return []
    peaks = lat["matmul_peak_flops"]
    out = ["`act()` latency (hopper dims, T=5, p50/p90 over repeated calls; % of the measured matmul peak of the "
           f"same precision: fp32 {peaks['fp32'] / 1e9:.0f}, bf16 {peaks.get('bf16', 0) / 1e9:.0f} GFLOP/s):", "",
           "| precision | batch | N | p50 ms | p90 ms | actions/s | GFLOP/call | % of peak |", "|---|---|---|---|---|---|---|---|"]
    for r in lat["rows"]:
        out.append(f"| {r['precision']} | {r['batch']} | {r['num_samples']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
                   f"{r['actions_per_s']:.0f} | {r['gflop_per_call']:.2f} | {100 * r['peak_fraction']:.0f}% |")
    return out


def main() -> None:
    sections = [("Quality", quality()), ("Training speed", speed()), ("Act latency", latency())]
    for title, lines in sections:
        if lines:
            print(f"### {title}\n")
            print("\n".join(lines) + "\n")
    if not any(lines for _, lines in sections):
        sys.exit("no results in benchmarks/results/")


if __name__ == "__main__":
    main()
