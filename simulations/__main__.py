"""``python -m simulations``: run seeds, campaigns, canaries, or real processes.

    python -m simulations run --seed 7                  one seed (exit 1 on a violation)
    python -m simulations run --seed 1 --seeds 2000     a campaign of seeds 1..2000
    python -m simulations run --seed 3 --canary fsync-lies
    python -m simulations run --seed 1 --seeds 150 --key-classes lists   only list keys
    python -m simulations run --seed 1 --seeds 300 --shards 3   sharded, slots moving
    python -m simulations --list-canaries
    python -m simulations nemesis --runs 200 --seed 1   real ``crdtkv serve`` processes
    python -m simulations cluster --seed 2 --duration 8 one real-process run, its events

The interpreter is re-executed with ``PYTHONHASHSEED=0`` when it runs with
another hash seed: the replica core iterates a few sets of strings, whose
order depends on the hash seed, so a seed reproduces exactly (same trace
hash) only under one fixed hash seed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from simulations.canaries import CANARIES
from simulations.config import FAULT_KINDS

__all__ = ["main"]


def _pin_hash_seed(argv: list[str]) -> None:
    if os.environ.get("PYTHONHASHSEED") == "0":
        return
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "simulations", *argv], env)


def _kinds(text: str) -> list[str]:
    if text in ("none", ""):
        return []
    if text == "all":
        return list(FAULT_KINDS)
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown fault kind(s) {', '.join(unknown)}; known: {', '.join(FAULT_KINDS)}"
        )
    return kinds


def _classes(text: str) -> list[str]:
    from simulations.workload import TYPE_WEIGHTS

    classes = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in classes if c not in TYPE_WEIGHTS]
    if unknown or not classes:
        raise argparse.ArgumentTypeError(
            f"unknown key class(es) {', '.join(unknown) or '(none given)'}; "
            f"known: {', '.join(TYPE_WEIGHTS)}"
        )
    return classes


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m simulations",
        description="Deterministic simulation of a crdtkv cluster (see docs/simulation.md).",
    )
    p.add_argument("--list-canaries", action="store_true", help="print canary names and exit")
    p.add_argument("--list-faults", action="store_true", help="print fault kinds and exit")
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("run", help="simulate one seed or a campaign of seeds")
    r.add_argument("--seed", type=int, default=1, help="the (first) seed (default 1)")
    r.add_argument("--seeds", type=int, default=1, help="number of seeds from --seed (default 1)")
    r.add_argument("--replicas", type=int, help="replicas (default: drawn from the seed, 2-5)")
    r.add_argument(
        "--faults",
        help="comma list of fault kinds to enable, 'all' or 'none' (default: swarm, "
        "each kind on with probability 1/2 per seed)",
    )
    r.add_argument("--exclude-faults", default="", help="fault kinds never to enable")
    r.add_argument("--duration", type=float, help="fault phase in simulated seconds")
    r.add_argument(
        "--canary", choices=sorted(CANARIES), help="inject a deliberately broken variant"
    )
    r.add_argument(
        "--key-classes",
        type=_classes,
        help="comma list of the key classes clients use (default: all), e.g. 'lists' or "
        "'hashes,zsets'",
    )
    r.add_argument(
        "--shards",
        type=int,
        help="a sharded run: this many shards (2-6) x --regions, slots moving between them "
        "under the faults, checked that no acknowledged write is lost (simulations/shards.py)",
    )
    r.add_argument(
        "--regions", type=int, help="(with --shards) regions, 1-3 (default: drawn, 2 or 3)"
    )
    r.add_argument("--durability", choices=("fsync", "wal"), default="fsync")
    r.add_argument("--report", type=Path, help="write report.json and PNG figures here")
    r.add_argument("--jobs", type=int, default=1, help="worker processes for a campaign")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--history", type=Path, help="(one seed) write the operation history as JSON")
    from simulations.nemesis.campaign import add_arguments

    n = sub.add_parser(
        "nemesis", help="a campaign of runs of real crdtkv serve processes under faults"
    )
    add_arguments(n)
    c = sub.add_parser("cluster", help="one nemesis run, printing its events as they happen")
    add_arguments(c, campaign=False)
    return p


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if argv is None:
        _pin_hash_seed(args_list)
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.list_canaries:
        for name in CANARIES:
            print(name)
        return 0
    if args.list_faults:
        for kind, what in FAULT_KINDS.items():
            print(f"{kind:13} {what}")
        return 0
    if args.command == "run":
        return _run(args, parser)
    if args.command in ("nemesis", "cluster"):
        from simulations.nemesis.campaign import main as nemesis_main

        if args.command == "cluster":
            args.runs, args.jobs, args.out, args.quiet, args.verbose = 1, 1, None, True, True
        return nemesis_main(args, parser)
    parser.print_help(sys.stderr)
    return 2


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from simulations.campaign import CampaignOptions, run_campaign

    try:
        faults = _kinds(args.faults) if args.faults not in (None, "swarm") else None
        exclude = _kinds(args.exclude_faults)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    if args.seeds < 1 or (args.replicas is not None and not 1 <= args.replicas <= 9):
        parser.error("--seeds must be >= 1 and --replicas in 1..9")
    if args.shards is not None and not 2 <= args.shards <= 6:
        parser.error("--shards must be from 2 to 6 (a move needs two shards)")
    if args.regions is not None and (args.shards is None or not 1 <= args.regions <= 3):
        parser.error("--regions goes with --shards and must be from 1 to 3")
    if args.shards is not None and (args.durability != "fsync" or args.replicas is not None):
        parser.error("--shards runs shards x regions replicas with --durability fsync")
    opts = CampaignOptions(
        seed=args.seed,
        seeds=args.seeds,
        replicas=args.replicas,
        faults=faults,
        exclude=exclude,
        duration_ms=round(args.duration * 1000) if args.duration is not None else None,
        durability=args.durability,
        canary=args.canary,
        key_classes=args.key_classes,
        shards=args.shards,
        regions=args.regions,
        report=args.report,
        jobs=max(1, args.jobs),
        progress=not args.quiet,
    )
    if args.seeds == 1 and args.report is None:
        return _one(opts, args.history)
    result = run_campaign(opts)
    s = result.summary()
    print(
        f"seeds: {s['seeds']} ({len(s['failing_seeds'])} failing), "
        f"simulated: {s['simulated_hours']:.2f} h ({s['fault_phase_hours']:.2f} h of faults), "
        f"operations: {s['operations']}, wall: {s['wall_s']:.0f} s"
    )
    if s["moves_planned"]:
        print(
            f"moves: {s['moves']} of {s['moves_planned']} finished, "
            f"acknowledged writes: {s['acked_writes']}"
        )
    print(f"violations by checker: {s['violations_by_checker'] or 'none'}")
    if s["violations_by_kind"]:
        print(f"violations by kind: {s['violations_by_kind']}")
    if args.report is not None:
        print(f"report: {args.report / 'report.json'}")
    return 1 if s["failing_seeds"] else 0


def _one(opts: object, history_path: Path | None) -> int:
    import json

    from simulations.campaign import CampaignOptions, config_for, repro_command
    from simulations.network import describe_topology
    from simulations.sim import Simulation

    assert isinstance(opts, CampaignOptions)
    cfg = config_for(opts, opts.seed)
    canary = CANARIES[cfg.canary] if cfg.canary else None
    if cfg.shards:
        return _one_sharded(opts, cfg)
    sim = Simulation(cfg)
    if canary is not None:
        with canary.patch():
            result = sim.run()
    else:
        result = sim.run()
    s = result.stats
    print(
        f"seed {cfg.seed}: {cfg.replicas} replicas, {cfg.durability}, "
        f"{cfg.duration_ms / 1000:g} s fault phase, {cfg.clients} clients, "
        f"faults: {', '.join(cfg.faults) or 'none'}"
        + (f", canary: {cfg.canary}" if cfg.canary else "")
        + (f", {cfg.topology}: {describe_topology(cfg.peers)}" if cfg.peers else "")
    )
    converged = (
        f"converged {s['converge_ms'] / 1000:g} s after healing"
        if s["converge_ms"] is not None
        else "did NOT converge"
    )
    print(
        f"  {s['ops']} operations ({s['ops_ok']} ok, {s['ops_fail']} failed, "
        f"{s['ops_unknown']} unknown), {s['sim_ms'] / 1000:g} s simulated, {converged}; "
        f"{s.get('crashes', 0)} crashes, {s.get('wipes', 0)} wipes, {s['state_syncs']} state syncs"
    )
    print(
        f"  sets (set-full): {s['set_adds_visible']} acknowledged adds seen by a later read, "
        f"{s['set_adds_never_read']} never read, {s['set_stale_reads']} stale reads"
    )
    print(f"  trace sha256:{result.trace_hash}")
    for v in result.violations:
        print(f"  VIOLATION {v.line()}")
    if history_path is not None:
        history_path.write_text(json.dumps([o.to_json() for o in sim.history.ops], indent=1))
    if canary is not None:
        caught = canary.checker in result.checkers_failed()
        print(f"canary {canary.name}: {'caught' if caught else 'NOT caught'} by {canary.checker}")
    verdict = "ok" if result.ok else f"FAIL ({len(result.violations)} violations: "
    if not result.ok:
        verdict += (
            f"{', '.join(result.checkers_failed())}) -- reproduce: {repro_command(opts, cfg.seed)}"
        )
    print(f"verdict: {verdict}")
    return 0 if result.ok else 1


def _one_sharded(opts: object, cfg: object) -> int:
    from simulations.campaign import CampaignOptions, repro_command
    from simulations.config import SimConfig
    from simulations.sim import run

    assert isinstance(opts, CampaignOptions) and isinstance(cfg, SimConfig)
    canary = CANARIES[cfg.canary] if cfg.canary else None
    result = run(cfg)
    s = result.stats
    print(
        f"seed {cfg.seed}: {cfg.shards} shards x {cfg.regions} regions, "
        f"{cfg.duration_ms / 1000:g} s fault phase, {cfg.clients} clients, "
        f"{cfg.moves} moves planned (hand-over pause {cfg.handover_pause_ms} ms), "
        f"faults: {', '.join(cfg.faults) or 'none'}"
        + (f", canary: {cfg.canary}" if cfg.canary else "")
    )
    converged = (
        f"settled {s['converge_ms'] / 1000:g} s after healing"
        if s["converge_ms"] is not None
        else "did NOT settle"
    )
    print(
        f"  {s['ops']} operations ({s['ops_ok']} ok, {s['ops_fail']} failed, "
        f"{s['ops_unknown']} unknown; {s['acked_writes']} acknowledged writes), "
        f"{s['sim_ms'] / 1000:g} s simulated, {converged}; {s.get('crashes', 0)} crashes, "
        f"{s.get('driver_crashes', 0)} driver crashes"
    )
    print(
        f"  moves: {s['moves_done']} of {s['moves_planned']} done ({s.get('slots_moved', 0)} "
        f"slots, final epoch {s['final_epoch']}); bulk copy {s.get('bulk_names', 0)} names "
        f"in {s.get('bulk_chunks', 0)} chunks, final copy {s.get('final_names', 0)} names, "
        f"{s.get('names_forwarded', 0)} names forwarded, {s.get('names_dropped', 0)} dropped; "
        f"redirects: {s.get('moved', 0)} moved, {s.get('asks', 0)} ask, "
        f"{s.get('try_again', 0)} try-again"
    )
    print(f"  trace sha256:{result.trace_hash}")
    for v in result.violations:
        print(f"  VIOLATION {v.line()}")
    if canary is not None:
        caught = canary.checker in result.checkers_failed()
        print(f"canary {canary.name}: {'caught' if caught else 'NOT caught'} by {canary.checker}")
    verdict = "ok" if result.ok else f"FAIL ({len(result.violations)} violations: "
    if not result.ok:
        verdict += (
            f"{', '.join(result.checkers_failed())}) -- reproduce: {repro_command(opts, cfg.seed)}"
        )
    print(f"verdict: {verdict}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
