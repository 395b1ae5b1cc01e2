"""The typed namespaces of both clients: ``db.registers``, ``db.counters``, ...

Their methods are generated from the op table's client methods
(``OpSpec.client``): each builds a ``Call`` (``crdtkv.client.model.op_call``)
and hands it to the client's ``call``: the blocking client returns the
result, the asyncio client an awaitable of it
(``await db.counters.incr("visits")``).  Each method has the signature and
docstring its ``Method`` row describes (``help(db.sets.add)`` shows them);
to the type checker every method takes anything and returns ``Any``.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from crdtkv.client.model import MISSING, Call, op_call
from crdtkv.ops.spec import CALLER, NO_DEFAULT, Kind, Method, OpSpec
from crdtkv.ops.table import TABLE

__all__ = [
    "AsyncKeys",
    "Counters",
    "Hashes",
    "Hlls",
    "Keys",
    "Lists",
    "Namespace",
    "Registers",
    "Sets",
    "Vsets",
    "Zsets",
    "signature",
]


class Caller(Protocol):
    def call(self, call: Call) -> Any: ...


class Namespace:
    """One type's methods; subclasses are generated, one per type of the table."""

    __slots__ = ("_c",)
    namespace = ""

    def __init__(self, c: Caller) -> None:
        self._c = c

    if TYPE_CHECKING:  # the methods are set on the generated subclasses

        def __getattr__(self, name: str) -> Callable[..., Any]: ...


_ANNOTATION = {
    Kind.KEY: "str",
    Kind.STRING: "str",
    Kind.STRINGS: "str",
    Kind.KEYS: "str",
    Kind.INT: "int",
    Kind.JSON: "Any",
    Kind.BOOL: "bool",
    Kind.FLOAT: "float",
    Kind.SCORES: "dict[str, float | str]",
    Kind.SCORE_BOUND: "float | str",
    Kind.LEX_BOUND: "str",
    Kind.FIELD: "str",
    Kind.FIELDS: "Mapping[str, Any]",
    Kind.VECTOR: "Sequence[float] | bytes",
}


def signature(spec: OpSpec, method: Method) -> inspect.Signature:
    """The client method's parameters (after ``self``), from the op's arguments."""
    positional: inspect._ParameterKind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params: list[inspect.Parameter] = []
    for arg in spec.args:
        if arg.name in method.omit:
            continue
        name, annotation = arg.client_name, _ANNOTATION[arg.kind]
        if arg.kind in (Kind.STRINGS, Kind.KEYS):
            kind = inspect.Parameter.VAR_POSITIONAL
            params.append(inspect.Parameter(name, kind, annotation=annotation))
            positional = inspect.Parameter.KEYWORD_ONLY  # what follows ``*values``
        elif arg.default is not NO_DEFAULT:
            params.append(
                inspect.Parameter(name, positional, default=arg.default, annotation=annotation)
            )
        elif not arg.required:
            annotation = f"{annotation} | None"
            params.append(inspect.Parameter(name, positional, default=None, annotation=annotation))
        else:
            params.append(inspect.Parameter(name, positional, annotation=annotation))
    if method.absent is CALLER:
        params.append(inspect.Parameter("default", positional, default=MISSING, annotation="Any"))
    return inspect.Signature(params, return_annotation="Any")


def _method(spec: OpSpec, method: Method, owner: str) -> Callable[..., Any]:
    sig = signature(spec, method)

    def call(self: Namespace, /, *args: Any, **kwargs: Any) -> Any:
        bound = sig.bind(*args, **kwargs)  # TypeError for wrong arguments, as a def would
        bound.apply_defaults()
        return self._c.call(op_call(spec, method, bound.arguments))

    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    call.__signature__ = sig.replace(parameters=[self_param, *sig.parameters.values()])  # type: ignore[attr-defined]
    call.__name__ = method.name
    call.__qualname__ = f"{owner}.{method.name}"
    call.__doc__ = method.doc
    call.__module__ = __name__
    return call


def _namespace(namespace: str, base: type[Namespace] = Namespace) -> type[Namespace]:
    owner = namespace.capitalize()

    class Generated(base):  # type: ignore[valid-type,misc]
        __slots__ = ()

    Generated.__name__ = Generated.__qualname__ = owner
    Generated.__doc__ = f"``db.{namespace}``: the client methods of the {namespace} ops."
    Generated.namespace = namespace
    for spec in TABLE:
        if spec.namespace == namespace:
            for method in spec.client or ():
                if method.name in vars(Generated):
                    raise ValueError(f"two client methods db.{namespace}.{method.name}")
                setattr(Generated, method.name, _method(spec, method, owner))
    return Generated


class _ScanIter(Namespace):
    """``db.keys.scan_iter``: every key, following the cursor of ``db.keys.scan``."""

    __slots__ = ()

    def scan_iter(
        self, match: str | None = None, type: str | None = None, count: int | None = None
    ) -> Iterator[str]:
        """Every key (matching the glob ``match``, of type ``type``), a page of
        ``count`` names at a time.  A key present for the whole iteration is
        yielded exactly once."""
        cursor: str | None = None
        while True:
            cursor, keys = self.scan(cursor, match, type, count)
            yield from keys
            if not cursor:
                return


class _AsyncScanIter(Namespace):
    """``db.keys.scan_iter`` of the asyncio client: ``async for key in ...``."""

    __slots__ = ()

    async def scan_iter(
        self, match: str | None = None, type: str | None = None, count: int | None = None
    ) -> AsyncIterator[str]:
        """Every key (matching the glob ``match``, of type ``type``), a page of
        ``count`` names at a time.  A key present for the whole iteration is
        yielded exactly once."""
        cursor: str | None = None
        while True:
            cursor, keys = await self.scan(cursor, match, type, count)
            for key in keys:
                yield key
            if not cursor:
                return


Registers = _namespace("registers")
Counters = _namespace("counters")
Sets = _namespace("sets")
Hlls = _namespace("hlls")
Keys = _namespace("keys", _ScanIter)
AsyncKeys = _namespace("keys", _AsyncScanIter)
Zsets = _namespace("zsets")
Hashes = _namespace("hashes")
Lists = _namespace("lists")
Vsets = _namespace("vsets")
