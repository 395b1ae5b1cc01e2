"""The op table's rows are consistent, and ``apply_op`` follows them.

Every row: a ``<type>.<verb>`` name on a type of the keyspace, the key
first, arguments that mean one thing across the table, a route whose path
arguments are its ``{name}`` segments (or none, and then no client method),
client methods that return a field of its result, one snapshot read per
type.  Applying a row: a valid op returns exactly its result shape, a read
changes nothing and answers 404 for an absent key, and each argument's bad
values are refused with 400 before anything changes.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from crdtkv.crdts import pack
from crdtkv.errors import BadRequest, NotFound
from crdtkv.ops import apply_op
from crdtkv.ops.spec import NO_DEFAULT, WHOLE, In, Kind, OpSpec, Out
from crdtkv.ops.table import (
    KEYS_NAMESPACE,
    NAMESPACES,
    OPS,
    TABLE,
    VIEW_TYPES,
    op_dict,
    snapshot_read,
)
from crdtkv.replica import TYPES, Replica

from .samples import NEEDS_KEY, bad_values, sample_op

ROWS = pytest.mark.parametrize("spec", TABLE, ids=lambda s: s.name)
READ_ROWS = pytest.mark.parametrize("spec", [s for s in TABLE if s.reads], ids=lambda s: s.name)
WRITE_ROWS = pytest.mark.parametrize("spec", [s for s in TABLE if s.writes], ids=lambda s: s.name)
NOW_MS = 1_700_000_000_000


def fresh() -> Replica:
    return Replica("r1", "inc1")


def fingerprint(r: Replica) -> tuple[Any, ...]:
    """Everything an op could change."""
    states = sorted((k, pack(v)) for k, v in r.states.items())
    return r.seq, len(r.pending), repr(r.applied.vv), states


def creator(namespace: str) -> OpSpec:
    """The type's first write: it makes the key exist (for the key-level ops, of any
    type, a register's)."""
    namespace = "registers" if namespace == KEYS_NAMESPACE else namespace
    return next(s for s in TABLE if s.namespace == namespace and s.writes)


# -- the rows ---------------------------------------------------------------------------------


def test_every_view_is_of_a_keyspace_type() -> None:
    assert tuple(VIEW_TYPES) == tuple(ns for ns in NAMESPACES if ns != KEYS_NAMESPACE)
    assert set(VIEW_TYPES.values()) <= set(TYPES)
    assert len(OPS) == len(TABLE)  # names are unique


@ROWS
def test_a_row_is_well_formed(spec: OpSpec) -> None:
    assert re.fullmatch(r"[a-z]+\.[a-z0-9]+", spec.name) and spec.namespace in NAMESPACES
    if spec.keyed:
        assert spec.args[0].http is In.PATH
    else:  # a keyless op (scan) is a read of the keyspace, with no path argument
        assert spec.namespace == KEYS_NAMESPACE and spec.reads and not spec.args_in(In.PATH)
    assert all(a.kind is not Kind.KEY for a in spec.args[1:])
    assert len({a.name for a in spec.args}) == len(spec.args)
    assert spec.fields == {"op", *(a.name for a in spec.args)}
    for arg in spec.args:
        if arg.http is In.QUERY:
            assert arg.query and not arg.required
            # a scalar query argument (scan's) is taken once; lists are repeated
            assert arg.kind in (Kind.STRINGS, Kind.KEYS) or not spec.keyed
        if arg.kind is Kind.INT:
            assert arg.lo <= arg.hi
        if arg.kind in (Kind.STRINGS, Kind.KEYS):
            assert arg.hi > 0
    if spec.reads:
        assert spec.retry_safe, "a read is always safe to send twice"
    assert spec.not_found == (spec.reads and spec.keyed and not spec.answers_absent)
    assert not spec.answers_absent or spec.reads


@ROWS
def test_a_row_has_a_route_and_client_methods_or_says_it_has_none(spec: OpSpec) -> None:
    if spec.route is None:
        assert spec.client is None and spec.body is None
        assert all(a.http is not In.PATH for a in spec.args[1:])
        return
    assert spec.route.method in ("GET", "PUT", "POST", "DELETE")
    if spec.keyed:
        assert spec.route.path.startswith(f"/v1/{spec.namespace}/")
    else:
        assert spec.route.path == f"/v1/{spec.namespace}"
    placeholders = re.findall(r"\{(\w+)\}", spec.route.path)
    assert placeholders == [a.name for a in spec.args_in(In.PATH)]
    body_args = spec.args_in(In.BODY)
    assert (spec.body is not None) == bool(body_args)
    assert (spec.route.method in ("GET", "DELETE")) == (not body_args)
    assert spec.client is None or len(spec.client) > 0  # None is the explicit "no method"


def test_ops_sharing_a_request_body_take_the_same_fields() -> None:
    by_name: dict[str, set[frozenset[str]]] = {}
    for spec in TABLE:
        if spec.body is not None:
            fields = frozenset(a.name for a in spec.args_in(In.BODY))
            by_name.setdefault(spec.body.name, set()).add(fields)
    assert all(len(v) == 1 for v in by_name.values()), by_name


def test_an_argument_name_means_one_thing_across_the_table() -> None:
    seen: dict[str, Any] = {}
    for spec in TABLE:
        for a in spec.args:
            meaning = (a.kind, a.lo, a.hi, a.doc, a.param, a.default)
            assert seen.setdefault(a.name, meaning) == meaning, (spec.name, a.name)


@ROWS
def test_client_methods_return_a_field_of_the_result(spec: OpSpec) -> None:
    for method in spec.client or ():
        assert method.doc
        returns = method.returns
        for name in (
            returns
            if isinstance(returns, tuple)
            else ()
            if returns is None or returns == WHOLE
            else (returns,)
        ):
            assert spec.result.field(name)
        assert set(method.omit) <= {a.name for a in spec.args if not a.required}
        if method.negate is not None:
            negated = next(a for a in spec.args if a.name == method.negate)
            assert negated.kind is Kind.INT and negated.lo == -negated.hi - 1
    for arg in spec.args:
        # a default is a number, or one of a string's choices (LMOVE's ends)
        assert arg.default is NO_DEFAULT or arg.kind is Kind.INT or arg.default in arg.choices


def test_each_type_has_one_snapshot_read() -> None:
    for ns in VIEW_TYPES:  # the key-level ops have none: they read no value
        snapshots = [s for s in TABLE if s.namespace == ns and s.snapshot]
        assert snapshots == [snapshot_read(ns)] and snapshots[0].reads
        assert snapshots[0].args == snapshots[0].args[:1] or all(
            not a.required for a in snapshots[0].args[1:]
        ), "a snapshot read needs nothing but the key"
    with pytest.raises(KeyError):
        snapshot_read("queues")


def test_op_dict_builds_a_known_op_only() -> None:
    assert op_dict("sets.add", "k", {"members": ["a"]}) == {
        "op": "sets.add",
        "key": "k",
        "members": ["a"],
    }
    with pytest.raises(KeyError):
        op_dict("sets.push", "k", {})


# -- applying the rows ----------------------------------------------------------------------


@ROWS
def test_a_valid_op_returns_its_result_shape(spec: OpSpec) -> None:
    r = fresh()
    if spec.reads or spec.name in NEEDS_KEY:
        apply_op(r, sample_op(creator(spec.namespace)), NOW_MS)
    result = apply_op(r, sample_op(spec), NOW_MS)
    assert set(result) == {f.name for f in spec.result.fields}
    for f in spec.result.fields:
        if f.kind is Out.OK:
            assert result[f.name] is True


@READ_ROWS
def test_a_read_changes_nothing_and_an_absent_key_is_404(spec: OpSpec) -> None:
    r = fresh()
    if spec.not_found:
        with pytest.raises(NotFound):
            apply_op(r, sample_op(spec, "absent"), NOW_MS)
    else:  # it answers for an absent key (EXISTS, TYPE, TTL, SCAN), and changes nothing
        before = fingerprint(r)
        apply_op(r, sample_op(spec, "absent"), NOW_MS)
        assert fingerprint(r) == before
    apply_op(r, sample_op(creator(spec.namespace)), NOW_MS)
    before = fingerprint(r)
    apply_op(r, sample_op(spec, optional=True), NOW_MS)
    assert fingerprint(r) == before


def _setups(spec: OpSpec) -> list[list[dict[str, Any]]]:
    """Replica histories before a write: none, its key made, another key made differently."""
    other = sample_op(creator(spec.namespace), "other")
    other.update(
        {a.name: ["c", "d"] for a in creator(spec.namespace).args if a.kind is Kind.STRINGS}
    )
    with_options = sample_op(creator(spec.namespace), optional=True)  # a TTL, for PERSIST
    return [[], [sample_op(creator(spec.namespace))], [other], [with_options]]


@WRITE_ROWS
def test_a_write_changes_state_with_one_delta_group_at_most(spec: OpSpec) -> None:
    changed = []
    for setup in _setups(spec):
        r = fresh()
        for op in setup:
            apply_op(r, op, NOW_MS)
        seq = r.seq
        if spec.name in NEEDS_KEY and all(op["key"] != "k" for op in setup):
            with pytest.raises(NotFound):
                apply_op(r, sample_op(spec, optional=True), NOW_MS + 1)
            assert r.seq == seq
            continue
        apply_op(r, sample_op(spec, optional=True), NOW_MS + 1)
        assert r.seq in (seq, seq + 1)
        changed.append(r.seq == seq + 1)
    assert any(changed), "declared a write, but never changed anything"


@ROWS
def test_every_bad_argument_is_refused_before_anything_changes(spec: OpSpec) -> None:
    r = fresh()
    apply_op(r, sample_op(creator(spec.namespace)), NOW_MS)
    for arg in spec.args:
        for bad in bad_values(arg):
            op = sample_op(spec, optional=True)
            op[arg.name] = bad
            before = fingerprint(r)
            with pytest.raises(BadRequest) as refused:
                apply_op(r, op, NOW_MS)
            assert fingerprint(r) == before, (spec.name, arg.name, bad)
            if arg.kind is not Kind.JSON:  # a JSON value's errors name what is wrong inside it
                named = arg.name.removesuffix("s")  # "a source key" for sources
                assert named in refused.value.message, (spec.name, bad, refused.value.message)
        if arg.required:
            op = sample_op(spec, optional=True)
            del op[arg.name]
            with pytest.raises(BadRequest):
                apply_op(r, op, NOW_MS)


def test_an_absent_optional_argument_is_not_given() -> None:
    r = fresh()
    for spec in TABLE:
        for arg in spec.args:
            if not arg.required:
                # One key per view: a key holds one type.
                op = sample_op(spec, f"k-{spec.namespace}")
                op[arg.name] = None  # null is the same as absent
                try:
                    apply_op(r, op, NOW_MS)
                except NotFound:
                    assert spec.reads


def test_an_op_that_is_not_in_the_table_is_refused() -> None:
    r = fresh()
    for op in ([], "registers.get", {"key": "k"}, {"op": "sets.push", "key": "k"}, {"op": 5}):
        with pytest.raises(BadRequest):
            apply_op(r, op, NOW_MS)


def test_values_are_validated_by_kind() -> None:
    r = fresh()
    cases = [
        ({"op": "registers.set", "key": "k"}, "missing field 'value'"),
        ({"op": "registers.set", "key": "k", "value": 1, "ttl_ms": 0}, "'ttl_ms' must be between"),
        ({"op": "counters.incr", "key": "k", "delta": True}, "'delta' must be an integer"),
        ({"op": "counters.incr", "key": "k"}, "missing field 'delta'"),
        ({"op": "sets.add", "key": "k", "members": "ab"}, "'members' must be a list of strings"),
        ({"op": "sets.contains", "key": "k", "member": 1}, "'member' must be a string"),
        ({"op": "hlls.merge", "key": "k", "sources": []}, "non-empty list of keys"),
        ({"op": "hlls.merge", "key": "k", "sources": [""]}, "a source key must not be empty"),
        ({"op": "hlls.count", "key": "k", "sources": ["a"] * 65}, "at most 64 sources"),
        ({"op": "registers.get", "key": ""}, "key must not be empty"),
    ]
    for op, message in cases:
        with pytest.raises(BadRequest) as refused:
            apply_op(r, op, NOW_MS)
        assert message in refused.value.message, (op, refused.value.message)
    # null is a register value, not a missing one
    assert apply_op(r, {"op": "registers.set", "key": "k", "value": None}, NOW_MS) == {"ok": True}
    assert apply_op(r, {"op": "registers.get", "key": "k"}, NOW_MS) == {"value": None}
    assert apply_op(r, {"op": "counters.decr", "key": "c", "delta": 3}, NOW_MS) == {"value": -3}


def test_the_writes_that_need_their_key_are_the_ones_the_table_names() -> None:
    assert {s.name for s in TABLE if s.needs_key} == NEEDS_KEY
    assert all(s.writes for s in TABLE if s.needs_key)
