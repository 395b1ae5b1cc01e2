"""``crdtkv bench``: a load generator for a running replica (or one it starts).

In the spirit of redis-benchmark: ``-c`` keep-alive connections (one aiohttp
``ClientSession`` whose connector holds at most ``-c`` connections, and ``-c``
workers, each with one request in flight) send ``-n`` requests (or run for
``--duration`` seconds) of each operation type in ``-t``, one type after the
other, against random keys out of ``--keyspace``.  With ``--batch N`` every
request is a ``POST /v1/batch`` of N ops (JSON, or MessagePack with
``--msgpack``).  Per type it reports requests/s (and ops/s), latency
percentiles, errors, and how much CPU the server and the generator used.

The generator is Python too: on a small machine it competes with the server
for the cores, so every result says how busy each side was (from
``/proc/<pid>/stat``; the server's pid is known with ``--spawn``, found from
the listening socket for a loopback URL, or given with ``--server-pid``), and
how busy the rest of the machine was.  A server at ~100% of one core is
saturated (its event loop is one thread); a generator near 100% means the
figure measures the generator.

``--spawn`` starts a ``crdtkv serve`` of its own in a temporary directory
(``--durability fsync|wal``), benchmarks it and stops it afterwards (cleanly,
with SIGTERM; killed if it does not stop), whatever happens, so a benchmark is
one command::

    crdtkv bench --spawn -t register_set,counter_incr -n 100000 -c 50
    crdtkv bench --spawn --durability wal -t counter_incr --batch 100 --msgpack
    crdtkv bench --url http://127.0.0.1:7001 --url http://127.0.0.1:7002 -t set_add
    crdtkv bench --spawn -t register_get --duration 10 --json out.json

``register_get`` reads keys that exist: before it runs, the keyspace is
filled with registers through batches (untimed; ``--no-prefill`` skips it,
and then a 404 counts as ``not_found``, not as an error).

Exit status: 0 when every request succeeded, 1 when some failed (the first
failures are named) or the server could not be reached or started, 2 for bad
options (one line naming the option).

The modules: ``options`` (the command line), ``machine`` (``/proc``
accounting and the spawned server), ``fetch`` (HTTP), ``runner`` (the
workload and the run), ``report`` (figures, table, JSON), ``command`` (the
entry point).
"""

from crdtkv.tools.bench.command import main
from crdtkv.tools.bench.options import TYPES, BenchConfig, parse_args
from crdtkv.tools.bench.report import percentile

__all__ = ["TYPES", "BenchConfig", "main", "parse_args", "percentile"]
