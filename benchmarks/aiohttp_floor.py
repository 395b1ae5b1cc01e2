"""The HTTP framework's own cost here: a bare aiohttp app under ``crdtkv bench``.

    .venv/bin/python benchmarks/aiohttp_floor.py -- -t register_set,register_get -n 20000 -c 50 \\
        --client raw --no-prefill

Serves the register endpoints with handlers that do nothing but parse the
JSON body and answer (no middlewares, no storage, no CRDTs), on uvloop like
``crdtkv serve``, in a child process, and points ``crdtkv bench`` at it with
the arguments after ``--``.  The server's CPU microseconds per request are
the floor under which no crdtkv change can bring a single request: what is
above it is crdtkv's own work (middlewares, session tokens, metrics, the
core, group commit).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

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

app = web.Application()
app.router.add_put("/v1/registers/{key}", put)
app.router.add_get("/v1/registers/{key}", get)
app.router.add_post("/v1/counters/{key}", put)
app.router.add_get("/healthz", healthz)
print("serving", flush=True)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None,
            loop=uvloop.new_event_loop())
"""


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(0.5)  # the "serving" line comes just before the socket is bound
        cmd = [sys.executable, "-m", "crdtkv.cli", "bench", "--url", f"http://127.0.0.1:{port}"]
        cmd += ["--server-pid", str(proc.pid), "--no-progress", *args]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run(cmd, env=env).returncode
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
