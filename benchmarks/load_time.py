"""What verifying the weights' sha256 costs at load time: ``from_pretrained`` of the shipped agent with and
without the check, side by side, plus the hash alone.

    python benchmarks/load_time.py [--agent DIR] [--reps 30]

Writes benchmarks/results/load_time.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from aligniql import AlignIQLAgent, hub  # noqa: E402
from aligniql.demo import EMBEDDED  # noqa: E402
from benchmarks.common import machine, write_json  # noqa: E402


def median_ms(fn, reps: int) -> float:
    fn()  # warm the page cache and imports
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", default=str(EMBEDDED))
    p.add_argument("--reps", type=int, default=30)
    args = p.parse_args(argv)
    weights = Path(args.agent) / hub.WEIGHTS_NAME
    rows = {}
    for _ in range(2):  # interleaved, so a busy moment hits both
        rows.setdefault("verified_ms", []).append(median_ms(lambda: AlignIQLAgent.from_pretrained(args.agent),
                                                            args.reps))
        with mock.patch.object(hub, "verify_sha256", lambda *a, **k: None):
            rows.setdefault("unverified_ms", []).append(
                median_ms(lambda: AlignIQLAgent.from_pretrained(args.agent), args.reps))
        rows.setdefault("sha256_ms", []).append(median_ms(lambda: hub.sha256_of(weights), args.reps))
    result = {k: min(v) for k, v in rows.items()}
    result |= {"weights_mb": weights.stat().st_size / 1e6, "agent": args.agent}
    print(f"from_pretrained {result['verified_ms']:.1f} ms verified, {result['unverified_ms']:.1f} ms without the "
          f"check; sha256 of {result['weights_mb']:.1f} MB alone {result['sha256_ms']:.2f} ms")
    print("wrote", write_json("load_time.json", {"machine": machine(), **result}))


if __name__ == "__main__":
    main()
