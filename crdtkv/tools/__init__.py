"""The tools layer: programs that drive crdtkv from outside, the way a user or an operator would.

The layers, innermost first: the pure types (``crdtkv.crdts``,
``crdtkv.replica``), the node core, the shells that put the core on the wire
(``crdtkv.api`` for HTTP, ``replication.http``), and these tools on top:

- ``crdtkv.tools.bench``: ``crdtkv bench``, the load generator;
- ``crdtkv.tools.cluster``: ``crdtkv cluster``, N local replicas as one cluster;
- ``crdtkv.tools.client_cli``: ``crdtkv get|set|incr|...``, the command-line
  client, its verbs derived from the op table;
- ``crdtkv.tools.procs``: local ``crdtkv serve`` children (free ports, the
  serving line, a clean stop), shared with ``benchmarks/``.

A tool talks to a replica only through its public interfaces (the command
line, HTTP, ``/proc``), never through the core's objects, so what it measures
or starts is what a user gets.  Nothing below this layer imports it.
"""
