"""The nemesis: real ``crdtkv serve`` processes under faults, judged by the simulator's checkers.

- ``proxy``: a fault-injecting HTTP proxy per directed replication link
  (partition, delay, drop, reset, duplicate, reorder) and ``ProxyMesh``,
  the same proxies on a thread for synchronous tests;
- ``run``: one run (processes, kill -9 and restart, clock offsets, clients,
  convergence, checkers);
- ``campaign``: ``python -m simulations nemesis --runs N``.

docs/simulation.md ("Real-process nemesis") describes it.
"""
