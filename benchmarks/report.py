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


def summary_table(runs: list[dict]) -> list[str]:
    """One row per method, one column per dataset: the table to read first."""
    methods = list(dict.fromkeys(m for q in runs for m in q["table"]))
    out = ["| method | " + " | ".join(q["dataset"].removeprefix("bench/") + (" (success %)" if "success" in q["metric"]
                                                                            else "") for q in runs) + " |",
           "|---|" + "---|" * len(runs)]
    for m in methods:
        cells = []
        for q in runs:
            r = q["table"].get(m)
            cells.append("–" if r is None else f"{r['mean']:.1f}" + (f" ± {r['std']:.1f}" if r["seeds"] > 1 else ""))
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    counts = [max(r["seeds"] for r in q["table"].values()) for q in runs]
    per = ", ".join(f"{q['dataset'].removeprefix('bench/')} {n}" for q, n in zip(runs, counts))
    return out + ["", f"Seeds per dataset: {per}" + (" (mean ± std over seeds)." if max(counts) > 1 else "."), ""]


def quality() -> list[str]:
    paths = sorted(RESULTS.glob("quality_*.json"))
    runs = [json.loads(path.read_text()) for path in paths]
    if not runs:
        return []
    budgets = sorted({f"{q['steps']} gradient steps at batch {q['batch_size']}, {q['episodes']} final evaluation "
                      f"episodes per seed and method" for q in runs})
    return [f"Budget: {'; '.join(budgets)}. Normalized score (success rate for PointMaze).", "",
            *summary_table(runs),
            "Learning curves (AlignIQL and d3rlpy IQL, score vs gradient steps): "
            + ", ".join(f"[{q['dataset'].removeprefix('bench/')}](benchmarks/results/{path.stem}.png)"
                        for path, q in zip(paths, runs)) + ".", ""]


def extraction() -> list[str]:
    paths = sorted(RESULTS.glob("extraction_*.json"))
    runs = [json.loads(path.read_text()) for path in paths]
    if not runs:
        return []
    episodes = sorted({q["episodes"] for q in runs})
    return ["Act-time settings on the same checkpoints (`benchmarks/extraction.py`; "
            f"{'/'.join(map(str, episodes))} episodes per seed, the quality table's episode seeds). "
            "Normalized score (success rate for PointMaze).", "", *summary_table(runs)]


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
    out: list[str] = []
    for path in sorted(RESULTS.glob("latency_*.json")):
        lat = json.loads(path.read_text())
        peaks, m = lat["matmul_peak_flops"], lat["machine"]
        peak_text = ", ".join(f"{k} {v / 1e9:.0f}" for k, v in peaks.items())
        out += [f"`{path.name}`: `act()` on {lat['device']} ({m['gpu'] if str(lat['device']).startswith('cuda') else m['cpu']}, {m['date']}; hopper dims, "
                f"T=5, p50/p90 over repeated calls; % of the measured matmul peak of the same precision: "
                f"{peak_text} GFLOP/s):", "",
                "| fast path | precision | batch | N | p50 ms | p90 ms | actions/s | GFLOP/call | % of peak |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in lat["rows"]:
            out.append(f"| {'compiled' if r.get('fast_path') else 'eager'} | {r['precision']} | {r['batch']} | "
                       f"{r['num_samples']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['actions_per_s']:.0f} | "
                       f"{r['gflop_per_call']:.2f} | {100 * r['peak_fraction']:.0f}% |")
        out.append("")
    return out


def main() -> None:
    sections = [("Quality", quality()), ("Extraction rules", extraction()), ("Training speed", speed()), ("Act latency", latency())]
    for title, lines in sections:
        if lines:
            print(f"### {title}\n")
            print("\n".join(lines) + "\n")
    if not any(lines for _, lines in sections):
        sys.exit("no results in benchmarks/results/")


if __name__ == "__main__":
    main()
