"""Replicas that are not fully meshed: chains, stars, rings, random connected graphs.

- the simulator's topologies (``simulations.network.topology``), how a seed
  draws one (the ``topology`` fault kind) and what ``SimCluster`` accepts;
- forwarding: what a replica learns, by push or by state sync, reaches its
  other peers and never goes back to where it came from;
- B17: stability over replicas a replica does not hear directly (a collected
  register came back in a chain);
- a campaign of topology seeds with every other fault kind.
"""

from __future__ import annotations

from collections import Counter

import pytest

from crdtkv.crdts.or_set import ORSet
from replication.protocol import Settings
from simulations.campaign import CampaignOptions, repro_command, run_seed
from simulations.config import FAULT_KINDS, TOPOLOGY_SHAPES, draw_config
from simulations.faults import HUB_BIAS
from simulations.harness import LinkFaults, SimCluster
from simulations.network import TOPOLOGIES, draw_episodes, hub_of, topology, topology_links
from simulations.sim import Simulation, final_read

Topology = dict[str, list[str]]

CHAIN: Topology = {"r0": ["r1"], "r1": ["r0", "r2"], "r2": ["r1"]}
STAR: Topology = {"r0": ["r1", "r2", "r3"], "r1": ["r0"], "r2": ["r0"], "r3": ["r0"]}
RING: Topology = {"r0": ["r1", "r3"], "r1": ["r0", "r2"], "r2": ["r1", "r3"], "r3": ["r0", "r2"]}


# -- drawing topologies ------------------------------------------------------------------------
def _connected(peers: Topology) -> bool:
    first = next(iter(peers))
    seen, todo = {first}, [first]
    while todo:
        for p in peers[todo.pop()]:
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return len(seen) == len(peers)


@pytest.mark.parametrize("shape", TOPOLOGIES)
@pytest.mark.parametrize("n", [2, 3, 4, 5, 7])
def test_every_topology_is_symmetric_and_connected(shape: str, n: int) -> None:
    import random

    ids = [f"r{i}" for i in range(n)]
    for seed in range(20):
        peers = topology(shape, ids, random.Random(seed))
        assert sorted(peers) == ids
        for rid, ps in peers.items():
            assert rid not in ps and all(rid in peers[p] for p in ps)
        assert _connected(peers)
        links = len(topology_links(peers)) // 2
        expected = {"mesh": n * (n - 1) // 2, "chain": n - 1, "star": n - 1}
        if shape in expected:
            assert links == expected[shape]
        if shape == "ring":
            assert links == (n if n > 2 else 1)
            assert all(len(ps) == (2 if n > 2 else 1) for ps in peers.values())
        if shape == "star" and n >= 3:
            assert hub_of(peers) is not None


def test_a_swarm_draws_a_topology_in_some_seeds_and_a_mesh_in_most() -> None:
    shapes = Counter(draw_config(seed).topology for seed in range(1, 401))
    assert shapes["mesh"] > 250
    assert set(shapes) == {"mesh", *TOPOLOGY_SHAPES}
    for seed in range(1, 401):
        cfg = draw_config(seed)
        assert ("topology" in cfg.faults) == (cfg.peers is not None)
        if cfg.peers is not None:
            assert sorted(cfg.peers) == [f"r{i}" for i in range(cfg.replicas)]


def test_the_topology_kind_draws_every_shape_and_leaves_the_other_draws_alone() -> None:
    assert "topology" in FAULT_KINDS
    shapes = {draw_config(seed, faults=["topology"]).topology for seed in range(1, 60)}
    assert shapes == set(TOPOLOGY_SHAPES)
    for seed in range(1, 60):
        cfg = draw_config(seed, faults=["topology", "crash"])
        mesh = draw_config(seed, faults=["crash"])
        assert cfg.peers is not None and mesh.peers is None and mesh.topology == "mesh"
        # Everything else a seed draws is as without the topology (but the
        # number of replicas: two have only one topology).
        assert cfg.intensities == mesh.intensities
        assert (cfg.clients, cfg.keys, cfg.duration_ms, cfg.max_offset_ms) == (
            mesh.clients,
            mesh.keys,
            mesh.duration_ms,
            mesh.max_offset_ms,
        )
        assert "topology" not in draw_config(seed, faults=["topology"], exclude=["topology"]).faults


def test_a_cluster_refuses_a_topology_that_is_not_symmetric_or_not_connected() -> None:
    with pytest.raises(ValueError, match="symmetric"):
        SimCluster(3, 1, topology={"r0": ["r1"], "r1": [], "r2": ["r1"]})
    with pytest.raises(ValueError, match="not connected"):
        SimCluster(4, 1, topology={"r0": ["r1"], "r1": ["r0"], "r2": ["r3"], "r3": ["r2"]})
    with pytest.raises(ValueError, match="every replica"):
        SimCluster(3, 1, topology={"r0": ["r1"], "r1": ["r0"]})
    c = SimCluster(3, 1, topology=CHAIN)
    assert {rid: n.peer_ids for rid, n in c.nodes.items()} == CHAIN
    assert set(c.nodes["r0"].rep.peers) == {"r1"}


def test_partitions_cut_only_links_of_the_topology() -> None:
    import random

    ids = ["r0", "r1", "r2", "r3"]
    links = topology_links(STAR)
    episodes = draw_episodes(
        random.Random(3), ids, 4_000, two_way=20, one_way=20, length_ms_max=500, links=links
    )
    assert episodes and all(ep.links <= links for ep in episodes)
    assert any(ep.links for ep in episodes)


def _struck(seed: int) -> tuple[str | None, list[str]]:
    """A star seed's hub, and the replicas its crashes and wipes strike."""
    cfg = draw_config(seed, faults=["topology", "crash", "wipe"])
    if cfg.topology != "star" or cfg.peers is None:
        return None, []
    sim = Simulation(cfg)
    struck: list[str] = []
    sim.faults.fault_node = lambda kind, rid, down_ms: struck.append(rid)  # type: ignore[method-assign]
    sim.faults.schedule()
    sim.cluster.run_for(cfg.duration_ms)
    return hub_of(cfg.peers), struck


def test_a_star_s_hub_is_crashed_and_wiped_in_many_seeds() -> None:
    hub_faults = faults = 0
    for seed in range(1, 200):
        hub, struck = _struck(seed)
        hub_faults += struck.count(hub) if hub else 0
        faults += len(struck)
    assert faults and hub_faults >= HUB_BIAS * faults * 0.8


# -- forwarding --------------------------------------------------------------------------------
def _kinds(c: SimCluster) -> Counter[tuple[str, str, str]]:
    sent: Counter[tuple[str, str, str]] = Counter()
    c.on_send.append(lambda src, dst, msg, blob: sent.update([(src, dst, type(msg).__name__)]))
    return sent


def test_writes_that_reach_the_middle_of_a_chain_only_by_sync_reach_its_end() -> None:
    # r0's writes outgrow its log while r0-r1 is cut: r1 learns them by state
    # sync (no log entries), and r2's only peer is r1.
    settings = Settings(log_bytes_max=300)
    c = SimCluster(3, 1, settings=settings, faults=LinkFaults(5, 0), topology=CHAIN)
    sent = _kinds(c)
    c.run_for(100)
    c.partition("r0", "r1")
    for i in range(40):
        c.nodes["r0"].apply({"op": "sets.add", "key": "s", "members": [f"m{i}"]}, c.now_ms)
    c.run_for(50)
    c.heal()
    c.settle(max_ms=20_000)
    members = c.nodes["r2"].replica.states[("set", "s")]
    assert isinstance(members, ORSet) and len(members) == 40
    assert sent[("r0", "r1", "SyncDone")] == 1 and sent[("r1", "r2", "SyncDone")] == 1
    # Nothing goes back to where it came from.
    assert sent[("r1", "r0", "SyncDigest")] == 0 and sent[("r2", "r1", "SyncDigest")] == 0


def test_pushed_writes_travel_a_chain_and_never_back() -> None:
    c = SimCluster(3, 1, faults=LinkFaults(5, 0), topology=CHAIN)
    shipped: Counter[tuple[str, str]] = Counter()

    def count(src: str, dst: str, msg: object, blob: bytes) -> None:
        entries = getattr(msg, "entries", ())
        shipped.update([(src, dst)] * len(entries))

    c.on_send.append(count)
    for _ in range(10):
        c.nodes["r0"].apply({"op": "counters.incr", "key": "c", "delta": 1}, c.now_ms)
        c.nodes["r2"].apply({"op": "counters.incr", "key": "c", "delta": 2}, c.now_ms)
    c.settle()
    for node in c.nodes.values():
        assert final_read(node, "counters", "c", c.now_ms) == {"value": 30}
    # r1 forwards each side's ten entries to the other side, and sends none back.
    assert shipped[("r0", "r1")] == 10 and shipped[("r2", "r1")] == 10
    assert shipped[("r1", "r0")] == 10 and shipped[("r1", "r2")] == 10


@pytest.mark.parametrize("topo", [CHAIN, STAR, RING], ids=["chain", "star", "ring"])
def test_a_wiped_hub_or_middle_replica_is_caught_up_and_forwards_again(topo: Topology) -> None:
    n = len(topo)
    hub = "r1" if topo is CHAIN else "r0"
    leaves = [r for r in topo if r != hub]
    settings = Settings(log_bytes_max=2_000)
    c = SimCluster(n, 1, settings=settings, faults=LinkFaults(5, 0), topology=topo)
    for i, rid in enumerate(leaves):
        c.nodes[rid].apply({"op": "sets.add", "key": "s", "members": [f"{rid}-{i}"]}, c.now_ms)
    c.run_for(300)
    c.wipe(hub)
    for rid in leaves:  # written while the hub is empty
        c.nodes[rid].apply({"op": "counters.incr", "key": "c", "delta": 1}, c.now_ms)
    c.settle(max_ms=30_000)
    for node in c.nodes.values():
        members = final_read(node, "sets", "s", c.now_ms)
        assert len(members["members"]) == len(leaves), (node.rid, members)
        assert final_read(node, "counters", "c", c.now_ms)["value"] == len(leaves)


# -- B17 ---------------------------------------------------------------------------------------
def test_b17_a_write_racing_a_delete_in_a_chain_survives_everywhere() -> None:
    # r0-r1-r2.  r2 writes k while cut off from r1; r0 then deletes k (a later
    # timestamp).  B17 was r0 collecting k's tombstone before r2 had applied
    # the delete, so r2's older write came back at r0 alone.  Keys are no
    # longer collected and a delete is observed-remove: it removes the write
    # it saw ("first"), not r2's, which it did not see.  Every replica must end
    # with r2's write, and the same state, whatever path each update took.
    c = SimCluster(3, 1, faults=LinkFaults(5, 0), topology=CHAIN)
    r0, r1, r2 = (c.nodes[r] for r in ("r0", "r1", "r2"))
    r0.apply({"op": "registers.set", "key": "k", "value": "first"}, c.node_now("r0"))
    c.run_for(200)
    c.partition("r1", "r2")
    r2.apply({"op": "registers.set", "key": "k", "value": "old"}, c.node_now("r2"))
    c.run_for(20)
    r0.apply({"op": "registers.delete", "key": "k"}, c.node_now("r0"))
    c.run_for(1_000)
    assert final_read(r0, "registers", "k", c.now_ms) == {"not_found": True}
    assert final_read(r1, "registers", "k", c.now_ms) == {"not_found": True}
    c.heal()
    c.settle(max_ms=20_000)
    assert c.converged()
    for node in (r0, r1, r2):
        got = final_read(node, "registers", "k", c.now_ms)
        assert got == {"value": "old"}, f"{node.rid}: {got}"


@pytest.mark.parametrize("topo", [CHAIN, STAR, RING], ids=["chain", "star", "ring"])
def test_a_delete_reaches_every_replica_in_any_topology(topo: Topology) -> None:
    c = SimCluster(len(topo), 1, faults=LinkFaults(5, 0), topology=topo)
    ends = sorted(topo, key=lambda r: len(topo[r]))[:2]
    c.nodes[ends[0]].apply({"op": "registers.set", "key": "k", "value": 1}, c.now_ms)
    c.run_for(200)
    assert all(final_read(n, "registers", "k", c.now_ms) == {"value": 1} for n in c.nodes.values())
    c.nodes[ends[1]].apply({"op": "registers.delete", "key": "k"}, c.node_now(ends[1]))
    c.settle()
    assert c.converged()
    for n in c.nodes.values():
        assert final_read(n, "registers", "k", c.now_ms) == {"not_found": True}, n.rid


# -- campaigns ---------------------------------------------------------------------------------
@pytest.mark.parametrize("durability", ["fsync", "wal"])
def test_a_campaign_of_topology_seeds_with_every_fault_finds_no_violation(durability: str) -> None:
    opts = CampaignOptions(faults=list(FAULT_KINDS), duration_ms=2_000, durability=durability)
    failures = []
    for seed in range(800_001, 800_051):
        result = run_seed(opts, seed)
        if not result.ok:
            lines = "\n    ".join(v.line()[:300] for v in result.violations[:5])
            failures.append(f"seed {seed}: {repro_command(opts, seed)}\n    {lines}")
    assert not failures, "\n".join(failures)
