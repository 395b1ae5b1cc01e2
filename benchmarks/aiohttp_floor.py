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
    .venv/bin/python benchmarks/aiohttp_floor.py --wrk get,incr,batch --server httptools

``--server httptools`` serves the same endpoints with no framework at all (an
asyncio protocol on uvloop with httptools' C parser, as uvicorn does): what a
lighter HTTP layer than aiohttp could reach here.  The server's CPU microseconds per request are
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


# The same four endpoints on a bare HTTP/1.1 protocol over uvloop with httptools' C
# parser (what uvicorn uses): no framework at all, keep-alive, no pipelining.  The
# floor of any Python request path that parses HTTP with httptools.
HTTPTOOLS_SERVER = r"""
import sys, asyncio, orjson, uvloop, httptools

OK = b'{"ok":true}'
GET = orjson.dumps({"value": "xxx"})
HEALTH = b'{"status":"ok"}'

def response(body):
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)

class Proto(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.p = httptools.HttpRequestParser(self)
        self.url = b""
        self.body = []

    def data_received(self, data):
        try:
            self.p.feed_data(data)
        except httptools.HttpParserError:
            self.t.close()

    def on_url(self, url):
        self.url += url

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        method, url, body = self.p.get_method(), self.url, b"".join(self.body)
        self.url, self.body = b"", []
        if url == b"/v1/batch":
            ops = orjson.loads(body)["ops"]
            out = orjson.dumps({"results": [{"ok": True}] * len(ops)})
        elif method == b"GET" and url.startswith(b"/v1/registers/"):
            out = GET
        elif url.startswith((b"/v1/registers/", b"/v1/counters/")):
            orjson.loads(body)
            out = OK
        else:
            out = HEALTH
        self.t.write(response(out))
        if not self.p.should_keep_alive():
            self.t.close()

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Proto, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    print("serving", flush=True)
    await server.serve_forever()

uvloop.run(main())
"""

SERVERS = {"aiohttp": SERVER, "httptools": HTTPTOOLS_SERVER}


def _wrk_args(args: list[str]) -> tuple[list[str], float, int, str] | None:
    """(ops, duration s, connections, server) when ``--wrk`` is given, else None."""
    if "--wrk" not in args:
        return None
    import argparse

    p = argparse.ArgumentParser(prog="aiohttp_floor.py")
    p.add_argument("--wrk", required=True, help="comma-separated: set, get, incr, batch")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("-c", "--connections", type=int, default=50)
    p.add_argument(
        "--server",
        choices=sorted(SERVERS),
        default="aiohttp",
        help="the bare app: aiohttp (default) or httptools (no framework: a protocol on "
        "uvloop with httptools' parser)",
    )
    ns = p.parse_args(args)
    ops = [o for o in ns.wrk.split(",") if o]
    bad = [o for o in ops if o not in ("set", "get", "incr", "batch")]
    if bad or not ops:
        p.error(f"--wrk takes set, get, incr, batch; not {','.join(bad) or 'nothing'}")
    return ops, ns.duration, ns.connections, ns.server


def spawn(server: str = "aiohttp") -> tuple[subprocess.Popen[str], int]:
    """A bare app (``SERVERS``) in a child process, serving; (process, port)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVERS[server], str(port)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    time.sleep(0.5)  # the "serving" line comes just before the socket is bound
    return proc, port


def _run_wrk(port: int, ops: list[str], duration: float, connections: int, server: str) -> int:
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
            f"{server} floor  {op:6s} {res['ops_per_s']:>10,.0f} ops/s"
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
    proc, port = spawn(wrk[3] if wrk is not None else "aiohttp")
    try:
        if wrk is not None:
            return _run_wrk(port, *wrk)
        cmd = [sys.executable, "-m", "crdtkv.cli", "bench", "--url", f"http://127.0.0.1:{port}"]
        cmd += ["--server-pid", str(proc.pid), "--no-progress", *args]
        return subprocess.run(cmd).returncode
    finally:
        stop_processes([proc], STOP_TIMEOUT_S)


if __name__ == "__main__":
    sys.exit(main())
