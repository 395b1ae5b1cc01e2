"""The operations simulated clients issue: every operation type of the public API.

Keys are few, so that clients collide on them.  Some keys are reserved for
one shape of use, because some checks only make sense there:

- ``mono*`` counters only ever get positive increments (a read in a session
  must never be below what the session saw: a sound "stale" test);
- ``ctr*`` counters get increments, decrements and resets (deletes);
- ``hll*`` HLLs only get adds (counts are checked against the items added);
- ``hllm`` is the destination of merges from ``hll0`` and ``hll1``;
- ``hlld`` gets adds and deletes;
- ``num*`` (the ``numbers`` keys) mix the two views of a string key on
  purpose: a register write of an integer, then counter increments on top
  of it (``SET k 5; INCR k`` gives 6), reads through both views, deletes;
- ``tc*`` (the ``conflicts`` keys) are written as different types (a
  register, a set, an HLL), so replicas that are apart create one name
  with several types: the visible type is the one written last;
- ``hash*`` (the ``hashes`` keys) get HSETs of integers (sometimes text),
  HINCRBYs, HDELs and DELs over a few fields (``FIELDS``), so that writes,
  increments and removals of one field race;
- ``zs*`` (the ``zsets`` keys) get ZADDs of a few small scores (ties are
  common, so the order of ties is exercised), ZINCRBYs, ZREMs, ZPOPMINs
  and DELs over ``MEMBERS``, read back by rank (ZRANGE);
- ``ls*`` (the ``lists`` keys) get LPUSHes and RPUSHes of one to three
  values (a push with ``exists`` now and then), pops from either end
  (sometimes of two or three), LREMs, LINSERTs and LSETs naming values
  the client pushed there recently, LMOVEs between the ``ls*`` keys (the
  same key included), rare LTRIMs (to the first or last dozen) and DELs,
  and are read whole or by range.  Every element value is unique per
  write (``"c<client>-<n>"``), so the final list says which write each
  element comes from; only an LMOVE copies a value (the moved element
  is a new element with the old value).  Pops, trims and DELs outweigh
  the pushes enough that a list stays at tens of elements.
- ``vs*`` (the ``vsets`` keys) get VADDs of small vectors (4 dimensions,
  integer values from -2 to 2, so that equal scores are common and ties
  are broken by element), half of them of a contended element (``v0`` ..
  ``v5``, written again and again: last writer wins on its vector and
  attributes), half of a new element unique per write (``c<client>-<n>``,
  so that the final set says which write an element comes from); VREMs
  and VSETATTRs of contended elements or of elements the client added
  there lately, rare DELs, and VSIMs with and without TRUTH (some with a
  FILTER on the attribute ``n``), VSIM ELE and whole reads.  On the last
  ``vs*`` key one VADD in five has 3 dimensions: after a DEL two replicas
  may create the set with different dimensions (the earlier creation
  wins, the other's elements are hidden).

Registers, counters, sets and HLLs otherwise use different names, so a
counter never meets a register holding JSON (that answers 409
``wrong_type``, a clean refusal, as does any write of a type the key is
not).  Register values are unique per write (``"<client>:<n>"``), so a
read names the write it saw.  ``ttl_ms`` is set on one register write in
five (never on the ``numbers`` and ``conflicts`` keys).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crdtkv.ops import table

__all__ = [
    "FIELDS",
    "MEMBERS",
    "MIXED",
    "MIXES",
    "TYPE_WEIGHTS",
    "VSET_DIM",
    "VSET_ELEMENTS",
    "VSET_FILTER",
    "VSET_OTHER_DIM",
    "Workload",
    "final_reads",
    "key_class",
    "keyspace",
    "op_dict",
]

MEMBERS = [f"m{i}" for i in range(8)]
FIELDS = [f"f{i}" for i in range(6)]
SCORES = [-1.0, 0.0, 1.0, 1.0, 2.0, 2.5, 3.0]  # few, small: ties of score are common
SCORE_STEPS = [-1.0, 0.5, 1.0, 1.0, 2.0]  # sums of halves are exact in a double
RECENT_MAX = 8  # list values a client remembers per key (for LREM, LINSERT, LPOS)
VSET_ELEMENTS = [f"v{i}" for i in range(6)]  # contended vector-set elements
VSET_DIM = 4
VSET_OTHER_DIM = 3  # the last vs* key's other dimension
VSET_FILTER = ".n >= 2"

TYPE_WEIGHTS: dict[str, int] = {
    "registers": 3,
    "counters": 3,
    "sets": 3,
    "hlls": 2,
    "numbers": 1,
    "conflicts": 1,
    "hashes": 2,
    "zsets": 2,
    "lists": 2,
    "vsets": 2,
}
MIXED: dict[str, tuple[str, ...]] = {
    "numbers": ("registers", "counters"),
    "conflicts": ("registers", "sets", "hlls"),
}
"""Key groups that are not one view: the views their names are used (and read) through."""

Mix = tuple[tuple[str, float, Mapping[str, Any]], ...]
# Per key class, the ops of the table a client draws: (op, r below which it is drawn, fixed
# arguments).  ``r`` is one uniform draw per op; the first op whose bound exceeds it is drawn.
MIXES: dict[str, Mix] = {
    "registers": (
        ("registers.set", 0.45, {}),
        ("registers.delete", 0.55, {}),
        ("registers.get", 1.0, {}),
    ),
    "mono": (("counters.incr", 0.5, {}), ("counters.get", 1.0, {})),
    "ctr": (("counters.incr", 0.45, {}), ("counters.delete", 0.55, {}), ("counters.get", 1.0, {})),
    "sets": (
        ("sets.add", 0.35, {}),
        ("sets.remove", 0.55, {}),
        ("sets.delete", 0.6, {}),
        ("sets.get", 0.8, {}),
        ("sets.contains", 1.0, {}),
    ),
    "hllm": (
        ("hlls.merge", 0.2, {"sources": ["hll0", "hll1"]}),
        ("hlls.add", 0.6, {}),
        ("hlls.count", 1.0, {}),
    ),
    "hlld": (("hlls.delete", 0.1, {}), ("hlls.add", 0.6, {}), ("hlls.count", 1.0, {})),
    "hll0": (
        ("hlls.add", 0.6, {}),
        ("hlls.count", 0.7, {"sources": ["hll1"]}),
        ("hlls.count", 1.0, {}),
    ),
    "hlls": (("hlls.add", 0.6, {}), ("hlls.count", 1.0, {})),
    "numbers": (
        ("registers.set", 0.2, {}),
        ("counters.incr", 0.6, {}),
        ("registers.delete", 0.65, {}),
        ("counters.get", 0.85, {}),
        ("registers.get", 1.0, {}),
    ),
    "conflicts": (
        ("registers.set", 0.2, {}),
        ("sets.add", 0.4, {}),
        ("hlls.add", 0.5, {}),
        ("registers.delete", 0.55, {}),
        ("sets.delete", 0.6, {}),
        ("hlls.delete", 0.62, {}),
        ("registers.get", 0.75, {}),
        ("sets.get", 0.9, {}),
        ("hlls.count", 1.0, {}),
    ),
    "hashes": (
        ("hashes.set", 0.35, {}),
        ("hashes.incr", 0.5, {}),
        ("hashes.remove", 0.6, {}),
        ("hashes.delete", 0.65, {}),
        ("hashes.getall", 0.88, {}),
        ("hashes.get", 1.0, {}),
    ),
    "zsets": (
        ("zsets.add", 0.3, {}),
        ("zsets.incr", 0.5, {}),
        ("zsets.remove", 0.58, {}),
        ("zsets.popmin", 0.61, {}),
        ("zsets.delete", 0.65, {}),
        ("zsets.range", 0.85, {"start": 0, "stop": -1, "withscores": True}),
        ("zsets.range", 0.93, {"start": 0, "stop": 2, "rev": True, "withscores": True}),
        ("zsets.range", 1.0, {"start": 1, "stop": -2}),
    ),
    "lists": (
        ("lists.lpush", 0.15, {}),
        ("lists.rpush", 0.32, {}),
        ("lists.lpop", 0.41, {}),
        ("lists.rpop", 0.5, {}),
        ("lists.remove", 0.54, {}),
        ("lists.insert", 0.58, {}),
        ("lists.set", 0.61, {}),
        ("lists.trim", 0.62, {"start": 0, "stop": 11}),
        ("lists.trim", 0.63, {"start": -12, "stop": -1}),
        ("lists.delete", 0.64, {}),
        ("lists.move", 0.7, {}),
        ("lists.range", 0.84, {"start": 0, "stop": -1}),
        ("lists.range", 0.9, {"start": 1, "stop": 3}),
        ("lists.index", 0.92, {}),
        ("lists.pos", 0.94, {}),
        ("lists.get", 1.0, {}),
    ),
    "vsets": (
        ("vsets.add", 0.35, {}),
        ("vsets.remove", 0.5, {}),
        ("vsets.setattr", 0.58, {}),
        ("vsets.delete", 0.61, {}),
        ("vsets.search", 0.73, {"truth": True}),
        ("vsets.search", 0.88, {}),
        ("vsets.similar", 0.91, {}),
        ("vsets.get", 1.0, {}),
    ),
}
_UNKNOWN = {name for mix in MIXES.values() for name, _, _ in mix} - set(table.OPS)
if _UNKNOWN:  # a renamed or removed op fails here, not mid-run
    raise ImportError(f"the workload draws ops the table lacks: {sorted(_UNKNOWN)}")


def keyspace(keys: int) -> dict[str, list[str]]:
    return {
        "registers": [f"reg{i}" for i in range(keys)],
        "counters": [f"mono{i}" for i in range(max(1, keys // 2))]
        + [f"ctr{i}" for i in range(max(1, keys - keys // 2))],
        "sets": [f"set{i}" for i in range(keys)],
        "hlls": ["hll0", "hll1", "hllm", "hlld"],
        "numbers": ["num0"],
        "conflicts": ["tc0", "tc1"],
        "hashes": [f"hash{i}" for i in range(max(1, (keys + 1) // 2))],
        "zsets": [f"zs{i}" for i in range(max(1, (keys + 1) // 2))],
        "lists": [f"ls{i}" for i in range(max(1, (keys + 1) // 2))],
        "vsets": [f"vs{i}" for i in range(max(1, (keys + 1) // 2))],
    }


def final_reads(keys: Mapping[str, list[str]]) -> list[tuple[str, str]]:
    """(view, name) of every final read: each name through every view it is used by."""
    out: list[tuple[str, str]] = []
    for group, names in keys.items():
        for view in MIXED.get(group, (group,)):
            out.extend((view, name) for name in names)
    return out


def key_class(namespace: str, key: str) -> str:
    """The ``MIXES`` entry for a key: its namespace, or the reserved shape of use it has."""
    if namespace == "counters":
        return "mono" if key.startswith("mono") else "ctr"
    if namespace == "hlls" and key in MIXES:
        return key
    return namespace  # also "numbers" and "conflicts"


def op_dict(kind: str, key: str, args: dict[str, Any]) -> dict[str, Any]:
    """The op as ``crdtkv.ops.apply_op`` (and ``/v1/batch``) takes it."""
    return table.op_dict(kind, key, args)


@dataclass
class Workload:
    client: int
    rng: random.Random
    keys: dict[str, list[str]]
    writes: int = 0
    ttl_prob: float = 0.2  # chance a register write carries a TTL
    classes: list[str] | None = None  # the TYPE_WEIGHTS entries drawn (None: all)
    # lists: per key, the values this client wrote there lately (what LREM, LINSERT's
    # pivot and LPOS name, so that they often find something)
    recent: dict[str, list[str]] = field(default_factory=dict)
    _op: tuple[str, str] = ("", "")  # (kind, key) of the op whose arguments are drawn

    def next_op(self) -> tuple[str, str, dict[str, Any]]:
        """(kind, key, args) of the next operation.

        The draws come in a fixed order (type, key, ``r``, then the type's
        shared draws, then the arguments): a seed replays the same workload.
        """
        rng = self.rng
        names = list(TYPE_WEIGHTS) if self.classes is None else self.classes
        namespace = rng.choices(names, [TYPE_WEIGHTS[n] for n in names])[0]
        key = rng.choice(self.keys[namespace])
        r = rng.random()
        cls = key_class(namespace, key)
        shared = self._shared(namespace)
        kind, fixed = next((k, f) for k, bound, f in MIXES[cls] if r < bound)
        self._op = (kind, key)
        args: dict[str, Any] = {}
        for arg in table.OPS[kind].args[1:]:  # after the key, in the table's order
            if arg.name in fixed:
                value = fixed[arg.name]
                args[arg.name] = list(value) if isinstance(value, list) else value
                continue
            draw = _ARGS.get(arg.name)
            if draw is None:
                if arg.required:
                    raise KeyError(f"the workload cannot draw {arg.name!r} of {kind}")
                continue  # an optional argument the workload leaves out
            value = draw(self, cls, shared)
            if value is not None:
                args[arg.name] = value
        return kind, key, args

    def _shared(self, namespace: str) -> Any:
        # Drawn before the op is chosen, whichever it is: sets, hashes and sorted sets a
        # member (field) count, HLLs the items.
        if namespace in ("sets", "hashes", "zsets"):
            return self.rng.randint(1, 3)
        if namespace == "lists":  # values per push
            return self.rng.choice((1, 1, 2, 3))
        if namespace in ("hlls", "conflicts"):
            return [f"i{self.rng.randint(0, 3_000)}" for _ in range(self.rng.randint(1, 6))]
        return None

    def _value(self, cls: str, shared: Any) -> object:
        self.writes += 1
        if cls == "numbers":  # an integer base (sometimes as text), increments go on top
            n = self.rng.randint(-50, 50)
            return str(n) if self.rng.random() < 0.3 else n
        tag = f"{self.client}:{self.writes}"
        return tag if self.rng.random() < 0.7 else {"w": tag, "n": self.writes}

    def _ttl_ms(self, cls: str, shared: Any) -> int | None:
        if self.rng.random() < self.ttl_prob and cls == "registers":
            return self.rng.choice([50, 300, 2_000])
        return None

    def _delta(self, cls: str, shared: Any) -> int:
        if cls == "mono":
            return self.rng.randint(1, 9)
        return self.rng.choice([-7, -3, -1, 1, 2, 5, 10])

    def _members(self, cls: str, shared: Any) -> list[str]:
        if cls == "conflicts":  # the shared draw is a list of HLL items
            return sorted({f"m{len(item) % 8}" for item in shared})
        return self.rng.sample(MEMBERS, shared)

    def _member(self, cls: str, shared: Any) -> str:
        return self.rng.choice(MEMBERS)

    def _fields(self, cls: str, shared: Any) -> dict[str, object]:
        out: dict[str, object] = {}
        for f in self.rng.sample(FIELDS, shared):
            self.writes += 1  # text values are unique per write: a read names the write
            text = self.rng.random() < 0.2
            out[f] = f"{self.client}:{self.writes}" if text else self.rng.randint(-20, 20)
        return out

    def _names(self, cls: str, shared: Any) -> list[str]:
        return self.rng.sample(FIELDS, shared)

    def _field(self, cls: str, shared: Any) -> str:
        return self.rng.choice(FIELDS)

    def _scores(self, cls: str, shared: Any) -> dict[str, float]:
        return {m: self.rng.choice(SCORES) for m in self.rng.sample(MEMBERS, shared)}

    def _increment(self, cls: str, shared: Any) -> float:
        return self.rng.choice(SCORE_STEPS)

    def _items(self, cls: str, shared: Any) -> list[str]:
        return list(shared)

    # -- lists ---------------------------------------------------------------------------------
    def _new_element(self) -> str:
        """A value no other write of the run has (``c<client>-<n>``), remembered for the key."""
        self.writes += 1
        value = f"c{self.client}-{self.writes}"
        recent = self.recent.setdefault(self._op[1], [])
        recent.append(value)
        del recent[:-RECENT_MAX]
        return value

    def _old_element(self) -> str:
        """A value this client wrote to the key lately (one that may be gone by now)."""
        recent = self.recent.get(self._op[1])
        if not recent:
            return f"c{self.client}-0"  # never written: the op finds nothing
        return self.rng.choice(recent)

    def _values(self, cls: str, shared: Any) -> list[str]:
        return [self._new_element() for _ in range(shared)]

    def _exists(self, cls: str, shared: Any) -> bool | None:
        return True if self.rng.random() < 0.05 else None

    def _pop_count(self, cls: str, shared: Any) -> int | None:
        return self.rng.choice((None, None, None, None, 1, 2, 3))

    def _element(self, cls: str, shared: Any) -> str:
        if cls == "vsets":
            return self._vset_element()
        if self._op[0] in ("lists.set", "lists.insert"):
            return self._new_element()
        return self._old_element()  # LREM, LPOS

    def _pivot(self, cls: str, shared: Any) -> str:
        return self._old_element()

    def _where(self, cls: str, shared: Any) -> str:
        return self.rng.choice(("before", "after"))

    def _index(self, cls: str, shared: Any) -> int:
        return self.rng.choice((0, 1, 2, -1, -2, -3))

    def _rem_count(self, cls: str, shared: Any) -> int:
        return self.rng.choice((0, 1, -1, 2))

    def _destination(self, cls: str, shared: Any) -> str:
        return self.rng.choice(self.keys["lists"])

    def _end(self, cls: str, shared: Any) -> str:
        return self.rng.choice(("left", "right"))

    # -- vector sets -------------------------------------------------------------------------
    def _vset_element(self) -> str:
        kind = self._op[0]
        if self.rng.random() < 0.5:
            return self.rng.choice(VSET_ELEMENTS)
        if kind == "vsets.add":
            return self._new_element()
        return self._old_element()  # VREM, VSETATTR, VSIM ELE

    def _vset_vector(self) -> list[float]:
        key = self._op[1]
        dim = VSET_DIM
        if key == self.keys["vsets"][-1] and self.rng.random() < 0.2:
            dim = VSET_OTHER_DIM
        while True:
            vec = [float(self.rng.randint(-2, 2)) for _ in range(dim)]
            if any(vec):
                return vec

    def _vector(self, cls: str, shared: Any) -> list[float]:
        return self._vset_vector()

    def _query(self, cls: str, shared: Any) -> list[float]:
        return self._vset_vector()

    def _attributes(self, cls: str, shared: Any) -> dict[str, Any] | None:
        if self.rng.random() < 0.4:
            return None  # VADD keeps the element's attributes
        self.writes += 1
        return {"n": self.rng.randint(0, 4), "w": f"{self.client}:{self.writes}"}

    def _new_attributes(self, cls: str, shared: Any) -> dict[str, Any]:
        self.writes += 1
        return {"n": self.rng.randint(0, 4), "w": f"{self.client}:{self.writes}"}

    def _search_count(self, cls: str, shared: Any) -> int:
        return self.rng.choice((1, 3, 5, 5, 20))

    def _filter(self, cls: str, shared: Any) -> str | None:
        return VSET_FILTER if self.rng.random() < 0.25 else None

    def _with_attributes(self, cls: str, shared: Any) -> bool | None:
        return True if self.rng.random() < 0.3 else None


# Argument name -> how a client draws it; None leaves an optional argument out.
_ARGS: dict[str, Callable[[Workload, str, Any], Any]] = {
    "value": Workload._value,
    "ttl_ms": Workload._ttl_ms,
    "delta": Workload._delta,
    "members": Workload._members,
    "member": Workload._member,
    "items": Workload._items,
    "fields": Workload._fields,
    "names": Workload._names,
    "field": Workload._field,
    "scores": Workload._scores,
    "increment": Workload._increment,
    "values": Workload._values,
    "exists": Workload._exists,
    "pop_count": Workload._pop_count,
    "element": Workload._element,
    "pivot": Workload._pivot,
    "where": Workload._where,
    "index": Workload._index,
    "rem_count": Workload._rem_count,
    "destination": Workload._destination,
    "from_end": Workload._end,
    "to_end": Workload._end,
    "vector": Workload._vector,
    "query": Workload._query,
    "attributes": Workload._attributes,
    "new_attributes": Workload._new_attributes,
    "search_count": Workload._search_count,
    "filter": Workload._filter,
    "with_attributes": Workload._with_attributes,
}
