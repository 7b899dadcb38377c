"""python benchmarks/profile_nodes.py NETWORK [--size N] [--runs 10] [--precision bf16] [--top 12]

Where a network's time goes in genrt: ONNX Runtime's per-node profile of a genrt.load session (GENRT_ORT_PROFILE),
after three warm-up calls. NETWORK is one of benchmarks/bench_bf16.py's names (gravel512, gravel1024, sr-x4, rrdb,
style26; its size unless --size) or a path to an .onnx file (then --size is required). Prints the median call time,
each op type's total of its nodes' median times, and the `--top` slowest nodes, in ms. Kernel decisions are made in
a fresh temporary GENRT_CACHE_DIR.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_bf16  # noqa: E402
from _util import cpu  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("network")
    ap.add_argument("--size", type=int)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="bf16", choices=["f32", "bf16", "auto"])
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    if args.network in bench_bf16.NETWORKS:
        size = args.size or bench_bf16.NETWORKS[args.network][1]
        path = bench_bf16._network_path(args.network, Path(tempfile.mkdtemp()))
    elif args.size:
        path, size = args.network, args.size
    else:
        sys.exit("a path needs --size")
    folder = tempfile.mkdtemp()
    os.environ["GENRT_ORT_PROFILE"] = folder
    os.environ["GENRT_CACHE_DIR"] = tempfile.mkdtemp()
    import genrt

    feeds = bench_bf16._feeds(path, size)
    model = genrt.load(path, threads=args.threads, precision=args.precision)
    for _ in range(3):
        model(**feeds)
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        model(**feeds)
        times.append(time.perf_counter() - t0)
    del model  # ORT writes the profile when the session goes
    gc.collect()
    profile = max(Path(folder).rglob("*.json"), key=lambda p: p.stat().st_size)
    per_node = collections.defaultdict(list)
    for event in json.loads(profile.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_node[(event["name"][: -len("_kernel_time")], event["args"].get("op_name"))].append(event["dur"] / 1e3)
    medians = {key: statistics.median(durations[-args.runs :]) for key, durations in per_node.items()}
    by_op = collections.Counter()
    for (_, op), ms in medians.items():
        by_op[op] += ms
    print(f"{cpu()}: {path} at {size}, genrt {args.precision}, {args.threads} threads")
    print(f"median call {1e3 * statistics.median(times):.1f} ms; nodes' medians sum to {sum(medians.values()):.1f}")
    for op, ms in by_op.most_common():
        print(f"  {op:<24}{ms:>9.2f}")
    for (name, op), ms in sorted(medians.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"{ms:>9.3f}  {op:<20}{name}")


if __name__ == "__main__":
    main()
