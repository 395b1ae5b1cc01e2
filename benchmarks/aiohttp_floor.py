"""The HTTP framework's own cost here: a bare aiohttp app under ``crdtkv bench``.

    .venv/bin/python benchmarks/aiohttp_floor.py -- -t register_set,register_get -n 20000 -c 50 \\
        --client raw --no-prefill

Serves the register, counter and batch endpoints with handlers that do
nothing but parse the JSON body and answer (no middlewares, no storage, no
CRDTs), on uvloop like ``crdtkv serve``, in a child process, and points
``crdtkv bench`` at it with the arguments after ``--``.

With ``--wrk OP[,OP...]`` (set, get, incr, batch) it drives the bare app with
the load ``benchmarks/compare.py`` uses instead (``wrk`` with
``benchmarks/lua/crdtkv.lua``, 50 connections, 2 threads, 5 s; ``--duration``
and ``-c`` change that), so its requests/s sit beside the comparison's::

    .venv/bin/python benchmarks/aiohttp_floor.py --wrk set,get,incr,batch
  The server's CPU microseconds per request are
the floor under which no crdtkv change can bring a single request: what is
above it is crdtkv's own work (middlewares, session tokens, metrics, the
core, group commit).
"""

from __future__ import annotations

import subprocess
import sys
import time

from crdtkv.tools.procs import free_port, stop_processes

STOP_TIMEOUT_S = 10.0

SERVER = r"""
import sys, orjson, uvloop, asyncio
from aiohttp import web

async def put(request):
    orjson.loads(await request.read())
    return web.Response(body=b'{"ok":true}', content_type="application/json")

async def get(request):
    return web.Response(body=orjson.dumps({"value": "xxx"}), content_type="application/json")

async def healthz(request):
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")

async def batch(request):
    ops = orjson.loads(await request.read())["ops"]
    return web.Response(body=orjson.dumps({"results": [{"ok": True}] * len(ops)}),
                        content_type="application/json")

app = web.Application()
app.router.add_post("/v1/batch", batch)
app.router.add_put("/v1/registers/{key}", put)
app.router.add_get("/v1/registers/{key}", get)
app.router.add_post("/v1/counters/{key}", put)
app.router.add_get("/healthz", healthz)
print("serving", flush=True)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None,
            loop=uvloop.new_event_loop())
"""


def _wrk_args(args: list[str]) -> tuple[list[str], float, int] | None:
    """(ops, duration s, connections) when ``--wrk`` is given, else None."""
    if "--wrk" not in args:
        return None
    import argparse

    p = argparse.ArgumentParser(prog="aiohttp_floor.py")
    p.add_argument("--wrk", required=True, help="comma-separated: set, get, incr, batch")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("-c", "--connections", type=int, default=50)
    ns = p.parse_args(args)
    ops = [o for o in ns.wrk.split(",") if o]
    bad = [o for o in ops if o not in ("set", "get", "incr", "batch")]
    if bad or not ops:
        p.error(f"--wrk takes set, get, incr, batch; not {','.join(bad) or 'nothing'}")
    return ops, ns.duration, ns.connections


def _run_wrk(port: int, ops: list[str], duration: float, connections: int) -> int:
    from compare import run_wrk  # benchmarks/, this script's directory

    for op in ops:
        res = run_wrk(
            f"http://127.0.0.1:{port}",
            "crdtkv.lua",
            op,
            connections,
            duration,
            10_000,
            2,
            100 if op == "batch" else 1,
        )
        print(
            f"aiohttp floor  {op:6s} {res['ops_per_s']:>10,.0f} ops/s"
            f"  ({res['requests_per_s']:,.0f} req/s)  p50 {res['p50_ms']:.2f} ms"
            f"  p99 {res['p99_ms']:.2f} ms  errors {res['errors']}",
            flush=True,
        )
    return 0


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    wrk = _wrk_args(args)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(0.5)  # the "serving" line comes just before the socket is bound
        if wrk is not None:
            return _run_wrk(port, *wrk)
        cmd = [sys.executable, "-m", "crdtkv.cli", "bench", "--url", f"http://127.0.0.1:{port}"]
        cmd += ["--server-pid", str(proc.pid), "--no-progress", *args]
        return subprocess.run(cmd).returncode
    finally:
        stop_processes([proc], STOP_TIMEOUT_S)


if __name__ == "__main__":
    sys.exit(main())
