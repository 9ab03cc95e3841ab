#!/usr/bin/env python3
"""Load test of `recsys-spark serve` on 127.0.0.1 only, bounded in time: GetRecommendations with an
exclusion filter at two catalog sizes (rank 64), and PutEvents throughput with a count check that every
acknowledged event is in the landing files; the server's memory, and the cost per million requests beside
the managed service's real-time price.

The data is synthetic and written without Spark: user and item factors saved as a solution version, the
interactions (20 per user, a fifth of them purchases) and items as Delta tables (delta-rs). The server runs
as its own process (`python -m recsys_spark serve`); the load comes from `wrk` (Debian package ``wrk``)
with 16 connections, on the same 2 cores, so the figures are a lower bound of what the server does alone.

  python scripts/bench_serve.py [--users 100000] [--items 20000 200000] [--seconds 10] [--workers 1 2]
  python scripts/bench_serve.py --stacks      # the web stacks compared (plain ASGI, Starlette, aiohttp)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RANK, SEEN = 64, 20
FILTER = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")'
ARN = "arn:aws:personalize:us-east-1:000000000000:{}"
GOALS = {20_000: (1500, 20.0), 200_000: (None, 50.0)}  # items -> (requests/s at least, p99 ms at most)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(work: Path, users: int, items: int) -> Path:
    """A warehouse with a trained-looking version of user-personalization, and its config."""
    from deltalake import write_deltalake

    from recsys_spark.config import load_config
    from recsys_spark.core.models.factors import FactorModel, user_table
    from recsys_spark.core.store import ArrowFiles, VersionStore

    rng = np.random.default_rng(0)
    root = work / "warehouse"
    user_ids = np.array([f"u{i}" for i in range(users)], dtype=object)
    item_ids = np.array(sorted(f"i{i}" for i in range(items)), dtype=object)
    config_path = work / "serve.yaml"
    config_path.write_text(textwrap.dedent(f"""
        dataset_group:
          name: bench
          root: {root}
          schemas:
            interactions:
              fields:
                - {{name: USER_ID, type: string}}
                - {{name: ITEM_ID, type: string}}
                - {{name: TIMESTAMP, type: long}}
                - {{name: EVENT_TYPE, type: string}}
            items:
              fields:
                - {{name: ITEM_ID, type: string}}
                - {{name: PRICE, type: double}}
        ingest: {{landing: {work / "landing"}}}
        solutions:
          - {{name: for-you, recipe: user-personalization, settings: {{factors: {RANK}}}}}
        filters:
          - {{name: not-bought, expression: '{FILTER}'}}
        campaigns:
          - {{name: for-you, solution: for-you, filters: [not-bought]}}
        serve: {{publish_seconds: 2}}
        """))
    config = load_config(config_path)
    seen_user = np.repeat(np.arange(users), SEEN)
    seen_item = rng.integers(0, items, len(seen_user))
    kinds = np.where(rng.random(len(seen_user)) < 0.2, "purchase", "view")
    write_deltalake(str(root / "interactions"), pa.table({
        "USER_ID": pa.array(user_ids[seen_user], pa.string()), "ITEM_ID": pa.array(item_ids[seen_item], pa.string()),
        "TIMESTAMP": np.full(len(seen_user), 1_700_000_000, np.int64), "EVENT_TYPE": pa.array(kinds, pa.string()),
        "_ORIGIN": pa.array(["bulk"] * len(seen_user), pa.string())}))
    write_deltalake(str(root / "items"), pa.table({"ITEM_ID": pa.array(item_ids, pa.string()),
                                                  "PRICE": rng.uniform(1, 100, items)}))
    solution = config.solution("for-you")
    settings = solution.recipe_settings()
    model = FactorModel(item_ids, rng.integers(1, 100, items).astype(np.float32),
                        rng.normal(0, 0.3, (items, RANK)).astype(np.float32), settings,
                        user_table(user_ids, rng.normal(0, 0.3, (users, RANK)).astype(np.float32)))
    VersionStore(config.root, ArrowFiles()).save("for-you", model, {
        "recipe": solution.recipe, "settings": settings.model_dump(), "events": solution.events.model_dump(),
        "newest_interaction": 1_700_000_000})
    return config_path


class Served:
    """`recsys-spark serve` as a process of its own, on 127.0.0.1."""

    def __init__(self, config_path: Path, workers: int = 1):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, "-m", "recsys_spark", "serve", "--config", str(config_path),
                                         "--port", str(self.port), "--workers", str(workers)], cwd=REPO,
                                        stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 600
        while True:  # every worker is up once each reports its campaign's version (a gauge per worker)
            try:
                metrics = urllib.request.urlopen(f"{self.url}/metrics", timeout=1).read().decode()
                if len(set(re.findall(r'recsys_campaign_version\{[^}]*pid="(\d+)"', metrics))) >= workers or \
                        workers == 1:
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start: {self.process.stderr.read()[-2000:]}")
            time.sleep(0.2)

    def pids(self) -> list[int]:
        """The server's process and its workers."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [self.process.pid, *map(int, children)]

    def rss(self) -> int:
        """Resident memory of the server's processes together."""
        return sum(int(re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{p}/status").read_text()).group(1)) * 1024
                   for p in self.pids())

    def cpu_seconds(self) -> float:
        """User + system CPU time the server's processes have used (all their threads), from /proc."""
        total = 0
        for p in self.pids():
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def wrk(url: str, script: str, seconds: int, work: Path, served: "Served | None" = None) -> dict:
    """Run wrk (16 connections, one thread) with a Lua ``script``; its figures as a dict, with the server's
    CPU milliseconds per request (``cpu_ms``: what a request costs whatever else runs on the machine)."""
    cpu = served.cpu_seconds() if served else None
    lua = work / "load.lua"
    lua.write_text(script)
    done = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds}s", "--latency", "-s", str(lua), url],
                          capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}

    def ms(text: str) -> float:
        match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
        if match is None:
            raise SystemExit(f"cannot read the latency {text!r} in wrk's output:\n{done}")
        return float(match.group(1)) * unit[match.group(2)]

    latency = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", done).group(1)
    requests = int(re.search(r"(\d+) requests in", done).group(1))
    return {"cpu_ms": (served.cpu_seconds() - cpu) * 1e3 / max(requests, 1) if served else None,
            # The distribution's own lines ("68.50%" in the stats line above them ends in "50%" too).
            "p50": ms(re.search(r"^\s+50%\s+(\S+)", done, re.M).group(1)),
            "p99": ms(re.search(r"^\s+99%\s+(\S+)", done, re.M).group(1)),
            "max": ms(latency), "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", done).group(1)),
            "requests": requests,
            "errors": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", done)) else 0}


RECOMMEND = """
local users = {users}
local n = 0
request = function()
  n = n + 1
  local body = '{{"campaignArn": "{arn}", "userId": "u' .. (n * 7919 % users) .. '", "numResults": 25, ' ..
               '"filterArn": "{filter}"}}'
  return wrk.format("POST", "/recommendations", {{["Content-Type"] = "application/json"}}, body)
end
"""

EVENTS = """
local n = 0
request = function()
  n = n + 1
  local events = {{}}
  for i = 1, 10 do
    events[i] = '{{"eventId": "{tag}-e' .. n .. '-' .. i .. '", "eventType": "view", "itemId": "i' ..
                (n + i) % {items} .. '", "sentAt": 1800000000}}'
  end
  local body = '{{"trackingId": "t", "userId": "u' .. n % {users} .. '", "sessionId": "s", "eventList": [' ..
               table.concat(events, ",") .. ']}}'
  return wrk.format("POST", "/events", {{["Content-Type"] = "application/json"}}, body)
end
"""


def warm_up(served: Served, users: int, work: Path) -> None:
    """Two seconds of load: the caches built on first use (catalog indexes, the transposed factors, the
    compiled filter) are in place before the memory is read and the timed run starts."""
    wrk(served.url, RECOMMEND.format(users=users, arn=ARN.format("campaign/for-you"),
                                     filter=ARN.format("filter/not-bought")), 2, work)


def landing_events(work: Path, tag: str) -> int:
    """Distinct event IDs of one run (``tag``) in the landing files (published and in progress)."""
    ids = set()
    for f in (work / "landing" / "events").glob("*serve-*.jsonl"):
        ids |= {i for line in f.read_text().splitlines() if (i := json.loads(line)["eventId"]).startswith(tag + "-")}
    return len(ids)


def serve_bench(args) -> None:
    from recsys_spark.config import Cost

    cost = Cost()
    rows, memory = [], {}
    for items in args.items:
        work = Path(tempfile.mkdtemp(prefix="recsys-bench-serve-"))
        try:
            print(f"{args.users:,} users x {items:,} items, rank {RANK}: building...", flush=True)
            config = build(work, args.users, items)
            for workers in args.workers:
                served = Served(config, workers)
                try:
                    warm_up(served, args.users, work)
                    memory[items, workers] = served.rss()
                    got = wrk(served.url, RECOMMEND.format(users=args.users, arn=ARN.format("campaign/for-you"),
                                                           filter=ARN.format("filter/not-bought")), args.seconds,
                              work, served)
                    rows.append((f"GetRecommendations + exclusion filter, {items:,} items, {workers} worker(s)", got,
                                 GOALS.get(items)))
                    if items == args.items[0]:
                        tag = f"w{workers}"
                        events = wrk(served.url, EVENTS.format(items=items, users=args.users, tag=tag), args.seconds,
                                     work, served)
                        served.stop()  # publishes the files in progress
                        landed = landing_events(work, tag)
                        acknowledged = (events["requests"] - events["errors"]) * 10
                        rows.append((f"PutEvents (10 events a call), {workers} worker(s): {landed:,} landed of "
                                     f"{acknowledged:,} acknowledged", events, None))
                        print(f"events, {workers} worker(s): {acknowledged / args.seconds:,.0f} events/s acknowledged; "
                              f"in the landing files: {landed:,} "
                              f"({'none lost' if landed >= acknowledged else 'LOST EVENTS'})", flush=True)
                finally:
                    if served.process.poll() is None:
                        served.stop()
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'load (wrk, 16 connections, ' + str(args.seconds) + ' s)':74} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>7} {'CPU ms':>7}  goal")
    for name, got, goal in rows:
        goal_text = "" if goal is None else "  " + ", ".join(
            filter(None, [f">= {goal[0]:,} req/s: {'met' if got['rps'] >= goal[0] else 'NOT met'}" if goal[0] else "",
                          f"p99 < {goal[1]:.0f} ms: {'met' if got['p99'] < goal[1] else 'NOT met'}"]))
        print(f"{name:74} {got['rps']:8,.0f} {got['p50']:7.2f} {got['p99']:7.2f} {got['max']:7.1f} "
              f"{got['cpu_ms']:7.3f}{goal_text}")
    print("(CPU ms: the server's CPU time per request, all its threads together, whatever else the machine runs: "
          "each core the server gets answers at most 1,000 / CPU ms requests a second)")
    small, large, one = args.items[0], args.items[-1], args.workers[0]
    fewer = args.users // 4  # a third server, only to see how memory grows with the users
    work = Path(tempfile.mkdtemp(prefix="recsys-bench-serve-"))
    try:
        served = Served(build(work, fewer, small), one)
        warm_up(served, fewer, work)
        fewer_rss = served.rss()
        served.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nserver memory (RSS after loading and a warm-up): " + ", ".join(
        f"{m / 2**20:,.0f} MiB at {args.users:,} users x {i:,} items, {w} worker(s)" for (i, w), m in memory.items())
          + f", {fewer_rss / 2**20:,.0f} MiB at {fewer:,} users x {small:,} items")
    per_users = (memory[small, one] - fewer_rss) / (args.users - fewer) * 1e6
    print(f"  per million users ({SEEN} interactions each, rank {RANK}): {per_users / 2**30:.2f} GiB", end="")
    if large != small:
        per_items = (memory[large, one] - memory[small, one]) / (large - small) * 1e5
        print(f"; per 100,000 items: {per_items / 2**20:,.0f} MiB", end="")
    print()
    first = f"GetRecommendations + exclusion filter, {small:,} items"
    rps = max(got["rps"] for name, got, _ in rows if name.startswith(first))
    ours = 2 * cost.price_per_core_hour_usd / (rps * 3600) * 1e6  # this machine's 2 cores, fully busy
    theirs = cost.compare_per_tps_hour_usd / 3600 * 1e6
    print(f"cost per million requests at {rps:,.0f} req/s on 2 cores at ${cost.price_per_core_hour_usd}/core-hour: "
          f"${ours:.4f}; the managed service at ${cost.compare_per_tps_hour_usd} per TPS-hour: ${theirs:.2f} "
          f"({theirs / ours:,.0f}x)")


STACKS = {
    "plain ASGI (uvicorn, httptools, uvloop)": """
import json
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive(); body += m.get("body", b"")
        if not m.get("more_body"): break
    json.loads(body)
    out = json.dumps({"itemList": [{"itemId": str(i), "score": 0.5} for i in range(25)]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": out})
""",
    "Starlette (uvicorn)": """
import json
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
async def rec(request):
    json.loads(await request.body())
    return Response(json.dumps({"itemList": [{"itemId": str(i), "score": 0.5} for i in range(25)]}),
                    media_type="application/json")
app = Starlette(routes=[Route("/recommendations", rec, methods=["POST"])])
""",
    "aiohttp": """
import json, sys
from aiohttp import web
async def rec(request):
    json.loads(await request.read())
    return web.Response(text=json.dumps({"itemList": [{"itemId": str(i), "score": 0.5} for i in range(25)]}),
                        content_type="application/json")
app = web.Application(); app.router.add_post("/recommendations", rec)
if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
""",
}


def stacks_bench(args) -> None:
    """The same minimal JSON endpoint under each candidate stack (those whose packages are installed)."""
    work = Path(tempfile.mkdtemp(prefix="recsys-bench-stacks-"))
    script = 'wrk.method = "POST"\nwrk.body = \'{"userId": "u1"}\'\nwrk.headers["Content-Type"] = "application/json"\n'
    try:
        for i, (name, source) in enumerate(STACKS.items()):
            module = work / f"stack{i}.py"
            module.write_text(source)
            port = free_port()
            command = ([sys.executable, str(module), str(port)] if "aiohttp" in name else
                       [sys.executable, "-m", "uvicorn", f"stack{i}:app", "--port", str(port), "--host", "127.0.0.1",
                        "--no-access-log", "--log-level", "warning"])
            process = subprocess.Popen(command, cwd=work, stderr=subprocess.DEVNULL)
            try:
                time.sleep(3)
                if process.poll() is not None:
                    print(f"{name:44} not installed")
                    continue
                got = wrk(f"http://127.0.0.1:{port}/recommendations", script, args.seconds, work)
                print(f"{name:44} {got['rps']:8,.0f} req/s  p50 {got['p50']:.2f} ms  p99 {got['p99']:.2f} ms",
                      flush=True)
            finally:
                process.terminate()
                process.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, nargs="+", default=[20_000, 200_000])
    p.add_argument("--seconds", type=int, default=10, help="length of each load run (bounded)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="server processes (serve --workers)")
    p.add_argument("--stacks", action="store_true", help="compare the candidate web stacks instead")
    args = p.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("error: wrk is needed (Debian/Ubuntu: sudo apt-get install wrk)")
    os.environ.pop("RECSYS_SPARK_SERVE_KEYS", None)  # loopback, unsigned: the load is the server's, not SigV4's
    (stacks_bench if args.stacks else serve_bench)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
