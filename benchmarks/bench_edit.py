"""python benchmarks/bench_edit.py [--models igan-digits igan-faces] [--repeats 20] [--threads 2]

Question: is one edit round interactive (the issue's target: under 200 ms on the 2-core machine)? For each bundled
manipulator: the median wall time of ``edit(z0, strokes, k=4)`` (the editor's Generate button: 8 starts, 30 Adam
steps on the ONNX gradient graph) for a colour stroke plus a sketch line, of ``morph(z0, z1, 8)`` (the strip the
page shows next), and of ``project(image)`` (once per photo); plus, as the baseline the round is made of, one
evaluation of the edit graph and of the projection graph on a batch of 8; and the round as the page sees it: POST
/api/edit to ``genrt edit``'s server (uvicorn on 127.0.0.1, in a thread of this process), JSON in, 4 PNG data
URLs out. Everything runs through genrt.load, in this one process (no ONNX Runtime on the other side to disturb
it).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import genrt

STROKES = [
    {"tool": "color", "points": [[0.2, 0.3], [0.5, 0.5], [0.8, 0.3]], "width": 0.1, "color": [255, 255, 255]},
    {"tool": "sketch", "points": [[0.5, 0.1], [0.5, 0.9]], "width": 0.03},
]


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm: sessions, kernel choices
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _measure(name: str, repeats: int, threads) -> dict:
    m = genrt.load(name, threads=threads)
    z0 = m.sample_latents(1, seed=0)[0]
    z1 = m.edit(z0, STROKES, k=1, seed=0)[0].z
    target = m.generate(m.sample_latents(1, seed=1))[0]
    z8 = m.sample_latents(8, seed=2)
    feeds = m._feeds(target=m.prepare_image(target))
    return {
        "model": name,
        "edit_round_ms": _median_ms(lambda: m.edit(z0, STROKES, k=4, seed=0), repeats),
        "morph_8_ms": _median_ms(lambda: m.morph(z0, z1, 8), repeats),
        "project_ms": _median_ms(lambda: m.project(target), max(3, repeats // 4)),
        "edit_graph_batch8_ms": _median_ms(lambda: m({"z": z8, **feeds}), repeats * 5),
        "projection_graph_batch8_ms": _median_ms(lambda: m.projection({"z": z8, **feeds}), repeats * 5),
        "http_edit_round_ms": _http_edit_ms(m, z0, repeats),
    }


def _http_edit_ms(m, z0, repeats: int) -> float:
    """The median round trip of POST /api/edit (k=4) to the editor's server on 127.0.0.1."""
    import threading
    import urllib.request

    import uvicorn

    from genrt.web.server import bind, create_app, url_of

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(m), log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        body = json.dumps({"z0": z0.tolist(), "strokes": STROKES, "k": 4, "seed": 0}).encode()
        request = urllib.request.Request(url_of(sock) + "api/edit", body, {"Content-Type": "application/json"})

        def post():
            with urllib.request.urlopen(request, timeout=30) as response:
                assert len(json.loads(response.read())["candidates"]) == 4

        return _median_ms(post, repeats)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    ap.add_argument("--models", nargs="+", default=["igan-digits", "igan-faces"])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    rows = [_measure(name, args.repeats, args.threads) for name in args.models]
    print(f"CPU: {_cpu()}; threads: {args.threads or genrt.kernels.get_num_threads()}")
    cols = ["edit_round_ms", "http_edit_round_ms", "morph_8_ms", "project_ms", "edit_graph_batch8_ms",
            "projection_graph_batch8_ms"]  # fmt: skip
    print("| model | edit round (k=4) | POST /api/edit | morph (8) | project | edit graph, batch 8 | "
          "projection graph, batch 8 |")  # fmt: skip
    print("|---|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        print(f"| {r['model']} | " + " | ".join(f"{r[c]:.{2 if r[c] < 10 else 0}f} ms" for c in cols) + " |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
