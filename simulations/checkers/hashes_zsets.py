"""Hashes and sorted sets: maps of numeric registers, recomputed from the history.

A hash (``crdtkv.crdts.or_map``) and a sorted set (``crdtkv.crdts.zset``)
are one causal context over a cell per field (member); each cell is a
numeric register's (a last-writer-wins base plus the increments that base
has not observed).  As for string keys (``simulations.checkers.numbers``),
every entry of a cell is minted by one operation's delta under that
operation's dot and dropped exactly when another executed delta covers it
(HSET/ZADD of the field over it, HDEL/ZREM/ZPOPMIN of the field, a DEL of
the key, the same writer's next increment).  ``surviving_cells`` computes
the converged cells from the recorded deltas without the map's join, so a
broken join cannot hide from it.  Three checkers:

- ``hash-converge``: after quiescence every replica answers HGETALL alike
  (*fields-differ*); no acknowledged HSET's field is absent at the end
  unless a remove or delete of the field may have observed it (*lost-hset*,
  black-box, as ``sets``'s lost add); and (white-box) every replica holds
  exactly the surviving entries of each field (*lost-field*,
  *resurrected-field*, *stale-entries*), so its value is theirs
  (*wrong-value*);
- ``zset-score``: on every replica each member's score is its surviving
  base plus the increments no base, remove or delete observed, and the
  members are exactly those with a surviving entry (*wrong-score*,
  *lost-member*, *resurrected-member*);
- ``zset-rank``: every ZRANGE answer is in rank order (score, then member;
  reversed for ``rev``) (*out-of-order*); after quiescence the full order
  (ZRANGE 0 -1 WITHSCORES) is the same at every replica (*ranks-differ*)
  and is the order of the surviving scores (*rank-order*).

Keys on which some executed operation may have been undone by a lost data
directory (``numbers.uncertain``) skip the white-box parts, as elsewhere.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from crdtkv.crdts.causal import Dot
from crdtkv.crdts.numeric import Cell, cell_scalar, cell_value
from crdtkv.crdts.or_map import ORMap
from crdtkv.crdts.zset import ZSet
from simulations.checkers.common import (
    DETAILS_MAX,
    Reads,
    States,
    Violation,
    first_failing,
    jkey,
    live_ops,
    strictly_before,
)
from simulations.checkers.numbers import surviving_cells, uncertain
from simulations.history import Final, History, Op, state_key

__all__ = ["check_hashes", "check_zsets", "hash_fields", "zset_items"]

HASH_REMOVERS = ("hashes.remove", "hashes.removefield", "hashes.delete")


def hash_fields(result: dict[str, Any] | None) -> dict[str, Any]:
    """An HGETALL answer's fields; empty when the hash is absent."""
    if result is None or result.get("not_found"):
        return {}
    fields = result.get("fields", {})
    return dict(fields) if isinstance(fields, dict) else {}


def zset_items(result: dict[str, Any] | None) -> list[tuple[str, float]]:
    """A full sorted-set read's (member, score) pairs, in the order given."""
    if result is None or result.get("not_found"):
        return []
    return [(m, float(s)) for m, s in result.get("items", [])]


def _minters(cell: Cell, minted: dict[Dot, Op]) -> str:
    ops = sorted({minted[e.dot].idx for e in cell if e.dot in minted})
    return ", ".join(f"#{i}" for i in ops[:4]) or "none"


def _dots(cell: Cell) -> list[Dot]:
    return sorted(e.dot for e in cell)


# -- hashes ---------------------------------------------------------------------------------
def check_hashes(history: History, final: Final) -> list[Violation]:
    out: list[Violation] = []
    for name in history.keys.get("hashes", []):
        ops = history.on_name(name)
        out += _hash_reads_agree(name, final)
        cells: dict[str, Cell] | None = None
        minted: dict[Dot, Op] = {}
        if final.replica_states is not None and not uncertain(ops):
            cells, minted = surviving_cells(ops, state_key("hashes", name))
        out += first_failing(final, partial(_hash_at, name, ops, cells, minted))
    return out


def _hash_reads_agree(name: str, final: Final) -> list[Violation]:
    answers = {
        rid: jkey(hash_fields(reads.get(("hashes", name)))) for rid, reads in final.reads.items()
    }
    if len(set(answers.values())) <= 1:
        return []
    return [
        Violation(
            "hash-converge",
            "fields-differ",
            f"hashes/{name} holds different fields or values at the replicas after "
            f"healing: {dict(sorted(answers.items()))}",
        )
    ]


def _hash_at(
    name: str,
    ops: list[Op],
    cells: dict[str, Cell] | None,
    minted: dict[Dot, Op],
    reads: Reads,
    states: States | None,
) -> list[Violation]:
    fields = hash_fields(reads.get(("hashes", name)))
    found = _lost_hsets(name, ops, fields)
    if cells is not None and states is not None:
        state = states.get(state_key("hashes", name))
        found += _hash_white_box(name, cells, minted, state if isinstance(state, ORMap) else None)
    return found[: DETAILS_MAX * 2]


def _lost_hsets(name: str, ops: list[Op], fields: dict[str, Any]) -> list[Violation]:
    """Black-box: an acknowledged HSET of ``f``, ``f`` absent at the end, and every
    removal of ``f`` (HDEL of it, DEL of the key) that may have happened was
    acknowledged before the HSET was invoked, so none could have observed it."""
    out: list[Violation] = []
    live = live_ops(ops)
    removers = [o for o in live if o.kind in HASH_REMOVERS or o.kind == "keys.delete"]
    for o in live:
        if o.kind not in ("hashes.set", "hashes.incr") or not o.acked:
            continue
        touched = [o.args["field"]] if o.kind == "hashes.incr" else list(o.args["fields"])
        for f in touched:
            if f in fields:
                continue
            might = [r for r in removers if _removes_field(r, f)]
            if all(strictly_before(r, o) for r in might):
                out.append(
                    Violation(
                        "hash-converge",
                        "lost-hset",
                        f"hashes/{name}: field {f!r} is absent at the end, but {o.describe()} "
                        f"was acknowledged and every removal of it finished before it began "
                        f"({len(might)} removal(s))",
                        [o.idx],
                    )
                )
                if len(out) >= DETAILS_MAX:
                    return out
    return out


def _removes_field(op: Op, field: str) -> bool:
    if op.kind == "hashes.remove":
        return field in op.args.get("names", [])
    if op.kind == "hashes.removefield":
        return bool(op.args.get("field") == field)
    return True  # a DEL of the key


def _hash_white_box(
    name: str, cells: dict[str, Cell], minted: dict[Dot, Op], state: ORMap | None
) -> list[Violation]:
    out: list[Violation] = []
    held: dict[str, Cell] = {f: c for f, c in state.entries.items() if c} if state else {}
    for f in sorted(set(cells) | set(held)):
        want, got = cells.get(f, ()), held.get(f, ())
        if not got:
            out.append(
                Violation(
                    "hash-converge",
                    "lost-field",
                    f"hashes/{name}: field {f!r} is absent, but entries {_dots(want)} "
                    f"(minted by {_minters(want, minted)}) were covered by no executed "
                    f"HSET, HDEL or DEL (value {cell_scalar(want)!r})",
                    [minted[e.dot].idx for e in want if e.dot in minted][:4],
                )
            )
        elif not want:
            out.append(
                Violation(
                    "hash-converge",
                    "resurrected-field",
                    f"hashes/{name}: field {f!r} is present ({cell_scalar(got)!r}, entries "
                    f"{_dots(got)}, minted by {_minters(got, minted)}), but executed "
                    f"operations removed every entry of it",
                )
            )
        elif _dots(got) != _dots(want):
            out.append(
                Violation(
                    "hash-converge",
                    "stale-entries",
                    f"hashes/{name}: field {f!r} holds entries {_dots(got)} (value "
                    f"{cell_scalar(got)!r}); the executed operations leave {_dots(want)} "
                    f"(value {cell_scalar(want)!r})",
                )
            )
        elif jkey(cell_scalar(got)) != jkey(cell_scalar(want)):
            out.append(
                Violation(
                    "hash-converge",
                    "wrong-value",
                    f"hashes/{name}: field {f!r} reads {cell_scalar(got)!r}; its surviving "
                    f"entries make {cell_scalar(want)!r}",
                )
            )
    return out


# -- sorted sets ----------------------------------------------------------------------------
def check_zsets(history: History, final: Final) -> list[Violation]:
    out: list[Violation] = []
    for name in history.keys.get("zsets", []):
        ops = history.on_name(name)
        out += _ranges_in_order(name, ops)
        out += _ranks_agree(name, final)
        if final.replica_states is None or uncertain(ops):
            continue
        cells, minted = surviving_cells(ops, state_key("zsets", name))
        out += first_failing(final, partial(_scores_at, name, cells, minted))
        out += first_failing(final, partial(_order_at, name))
    return out


def _rank_key(item: tuple[str, float]) -> tuple[float, str]:
    return (item[1], item[0])


def _ranges_in_order(name: str, ops: list[Op]) -> list[Violation]:
    """Black-box, every read: ZRANGE answers by (score, member), reversed for REV."""
    out: list[Violation] = []
    for o in ops:
        if o.status != "ok" or o.result is None or o.kind not in ("zsets.range", "zsets.get"):
            continue
        items = o.result.get("items", [])
        if not o.args.get("withscores", o.kind == "zsets.get"):
            continue  # members only: the order cannot be checked without the scores
        keys = [(float(s), m) for m, s in items]
        want = sorted(keys, reverse=bool(o.args.get("rev")))
        if keys != want:
            out.append(
                Violation(
                    "zset-rank",
                    "out-of-order",
                    f"zsets/{name}: {o.describe()} is not in rank order (score, then member)",
                    [o.idx],
                )
            )
            if len(out) >= DETAILS_MAX:
                break
    return out


def _ranks_agree(name: str, final: Final) -> list[Violation]:
    answers = {
        rid: jkey(zset_items(reads.get(("zsets", name)))) for rid, reads in final.reads.items()
    }
    if len(set(answers.values())) <= 1:
        return []
    return [
        Violation(
            "zset-rank",
            "ranks-differ",
            f"zsets/{name}: ZRANGE 0 -1 WITHSCORES differs at the replicas after healing: "
            f"{dict(sorted(answers.items()))}",
        )
    ]


def _order_at(name: str, reads: Reads, states: States | None) -> list[Violation]:
    """White-box: the replica's full range is its members sorted by (score, member)."""
    state = states.get(state_key("zsets", name)) if states is not None else None
    if not isinstance(state, ZSet):
        return []
    scores = [(m, v) for m, c in state.entries.items() if (v := _score(c)) is not None]
    want = sorted(scores, key=_rank_key)
    got = state.range_by_rank(0, -1)
    read = zset_items(reads.get(("zsets", name)))
    if got == want and read == want:
        return []
    return [
        Violation(
            "zset-rank",
            "rank-order",
            f"zsets/{name}: ZRANGE 0 -1 gives {got} (read: {read}); by score, then member, "
            f"the members are {want}",
        )
    ]


def _score(cell: Cell) -> float | None:
    """The score a cell makes: its base plus its unobserved increments (None: no entry)."""
    v = cell_value(cell) if cell else None
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _scores_at(
    name: str, cells: dict[str, Cell], minted: dict[Dot, Op], reads: Reads, states: States | None
) -> list[Violation]:
    state = states.get(state_key("zsets", name)) if states is not None else None
    held = {m: c for m, c in state.entries.items() if c} if isinstance(state, ZSet) else {}
    read = dict(zset_items(reads.get(("zsets", name))))
    out: list[Violation] = []
    for m in sorted(set(cells) | set(held) | set(read)):
        want = cells.get(m, ())
        score = _score(want)
        got = read.get(m)
        if m in held and not want:
            out.append(
                Violation(
                    "zset-score",
                    "resurrected-member",
                    f"zsets/{name}: {m!r} is present (score {got}, entries {_dots(held[m])}, "
                    f"minted by {_minters(held[m], minted)}), but executed operations removed "
                    f"every entry of it",
                )
            )
        elif want and m not in held:
            out.append(
                Violation(
                    "zset-score",
                    "lost-member",
                    f"zsets/{name}: {m!r} is absent, but entries {_dots(want)} (minted by "
                    f"{_minters(want, minted)}) were covered by no executed ZADD, ZREM or DEL",
                    [minted[e.dot].idx for e in want if e.dot in minted][:4],
                )
            )
        elif got != score:
            out.append(
                Violation(
                    "zset-score",
                    "wrong-score",
                    f"zsets/{name}: {m!r} scores {got}; its surviving base and the increments "
                    f"no base, ZREM or DEL observed make {score} (entries {_dots(want)}, "
                    f"minted by {_minters(want, minted)})",
                )
            )
    return out[: DETAILS_MAX * 2]
