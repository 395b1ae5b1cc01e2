"""The vector set's rows of the op table (``crdtkv.ops.table`` appends ``VSETS``).

Kept apart from ``table.py`` only for size.  An argument name means one thing
across the table, so the counts have their own names (``search_count``,
``rand_count``; the client and the CLI call both ``count``) and ``element`` is
the list's.  Reads that take more than the key travel as POST with a JSON
body, as the list's do.  The Redis commands (VADD, VSIM, ...) are in
``crdtkv.resp.vsets``.
"""

from __future__ import annotations

from crdtkv import limits
from crdtkv.crdts.vset import DIM_MAX
from crdtkv.ops import vsets
from crdtkv.ops.hash_rows import DEL
from crdtkv.ops.list_rows import ELEMENT
from crdtkv.ops.spec import (
    WHOLE,
    Apply,
    Arg,
    Body,
    Doc,
    Field,
    In,
    Kind,
    Method,
    OpSpec,
    Out,
    Route,
    Shape,
    Verb,
)

__all__ = ["VSETS"]

# -- arguments --------------------------------------------------------------------------------
KEY = Arg("key", Kind.KEY, http=In.PATH)
VECTOR = Arg(
    "vector",
    Kind.VECTOR,
    hi=DIM_MAX,
    doc="A vector: an array of numbers (stored as float32), or base64 of float32 "
    "little-endian values (the binary form, Redis's FP32).",
)
QUERY_VECTOR = Arg(
    "query",
    Kind.VECTOR,
    hi=DIM_MAX,
    doc="The vector to search by (an array of numbers, or base64 of float32 values).",
    param="vector",
)
ATTRIBUTES = Arg(
    "attributes",
    Kind.JSON,
    required=False,
    doc="A JSON object of attributes (FILTER reads its top-level fields); absent or "
    "null: keep the element's.",
)
SET_ATTRIBUTES = Arg(
    "new_attributes",
    Kind.JSON,
    doc="A JSON object of attributes, or null to remove them.",
    param="attributes",
)
QUANT = Arg(
    "quant",
    Kind.STRING,
    required=False,
    choices=("noquant", "q8", "bin"),
    doc="This replica's index quantization (Redis NOQUANT, Q8, BIN; default q8): a "
    "local choice, taken from the first write that gives it.",
    help="index quantization: noquant, q8 or bin",
)
M = Arg(
    "m",
    Kind.INT,
    required=False,
    lo=4,
    hi=128,
    doc="HNSW links per node of this replica's index (default 16).",
    help="HNSW links per node",
)
EF = Arg(
    "ef",
    Kind.INT,
    required=False,
    lo=1,
    hi=100_000,
    doc="HNSW exploration factor: of the index build on a write, of the search on a "
    "search (defaults 200 and the index's).",
    help="HNSW exploration factor",
)
SEARCH_COUNT = Arg(
    "search_count",
    Kind.INT,
    required=False,
    lo=1,
    hi=limits.RANGE_MAX,
    doc="How many matches (default 10).",
    param="count",
    help="how many matches (default 10)",
)
FILTER = Arg(
    "filter",
    Kind.STRING,
    required=False,
    hi=4096,
    doc="A filter expression over the attributes, in Redis's syntax: "
    '`.year >= 1980 and .genre == "action"`.',
    help="a filter expression over the attributes",
)
FILTER_EF = Arg(
    "filter_ef",
    Kind.INT,
    required=False,
    lo=1,
    hi=10_000_000,
    doc="How many candidates a filtered search may examine (default count x 100).",
    help="candidates a filtered search may examine",
)
TRUTH = Arg(
    "truth",
    Kind.BOOL,
    required=False,
    doc="An exact scan instead of the index (the same answer at every replica).",
    help="exact scan",
)
WITH_ATTRIBUTES = Arg(
    "with_attributes",
    Kind.BOOL,
    required=False,
    doc="Return each match's attributes too.",
    help="print attributes too",
)
RAND_COUNT = Arg(
    "rand_count",
    Kind.INT,
    required=False,
    lo=-limits.RANGE_MAX,
    hi=limits.RANGE_MAX,
    doc="Absent: one element; > 0: up to this many distinct; < 0: exactly -count, maybe repeated.",
    param="count",
    help="how many (negative: with repeats)",
)

# -- result bodies ----------------------------------------------------------------------------
OK = Shape("Ok", (Field("ok", Out.OK),))
ADDED = Shape("VsetAdded", (Field("added", Out.BOOL, "True: the element is new."),))
REMOVED = Shape("VsetRemoved", (Field("removed", Out.BOOL, "True: it was there."),))
UPDATED = Shape("VsetUpdated", (Field("updated", Out.BOOL, "False: no such element."),))
MATCHES = Shape(
    "VsetMatches",
    (Field("matches", Out.MATCHES, "Best first: element, score (1: same direction)."),),
)
CARD = Shape("VsetCard", (Field("card", Out.COUNT, "Elements."),))
DIM = Shape("VsetDim", (Field("dim", Out.COUNT, "Dimensions of every vector."),))
EMB = Shape("VsetVector", (Field("vector", Out.VECTOR, "Null: no such element."),))
ATTRS = Shape("VsetAttributes", (Field("attributes", Out.JSON, "Null: none."),))
MEMBER = Shape("VsetMember", (Field("member", Out.BOOL),))
ELEMENTS = Shape("VsetElements", (Field("elements", Out.STRINGS, "Elements."),))
VIEW = Shape(
    "VsetView",
    (
        Field("dim", Out.COUNT),
        Field("card", Out.COUNT),
        Field("elements", Out.JSON, "element -> {vector, attributes}"),
    ),
)
INFO = Shape(
    "VsetInfo",
    (
        Field("dim", Out.COUNT),
        Field("card", Out.COUNT),
        Field("quant", Out.STRING, "This replica's index quantization."),
        Field("m", Out.COUNT),
        Field("ef_construction", Out.COUNT),
        Field(
            "index",
            Out.STRING,
            "ready; building (in the background); or none. Searches scan until ready.",
        ),
        Field("indexed", Out.COUNT, "Elements in this replica's index."),
    ),
)

DELETED = "Deleted (also when it did not exist)."
_SEARCH_DOC = (
    "Cosine similarity; the score is 1 for the same direction, 0 for the opposite one. "
    "Served from this replica's HNSW index (approximate: answers may differ slightly "
    "between replicas), or by an exact scan with truth or while the index is being built. "
    "A filter is applied during the search, so a selective filter still returns count "
    "matches when they exist."
)


def _search_row(
    name: str, by: Arg, apply: Apply, summary: str, body: Body, method: Method
) -> OpSpec:
    return OpSpec(
        f"vsets.{name}",
        (KEY, by, SEARCH_COUNT, EF, FILTER, FILTER_EF, TRUTH, WITH_ATTRIBUTES),
        apply,
        writes=False,
        result=MATCHES,
        doc=Doc(
            summary,
            "The most similar elements, best first.",
            {"matches": [{"element": "a", "score": 0.98}]},
            _SEARCH_DOC,
        ),
        route=_route("POST", "{key}/" + name),
        body=body,
        client=(method,),
    )


def _route(method: str, path: str) -> Route:
    return Route(method, "/v1/vsets/" + path)


def _element_read(
    name: str, result: Shape, apply: Apply, doc: Doc, client: tuple[Method, ...]
) -> OpSpec:
    return OpSpec(
        f"vsets.{name}",
        (KEY, ELEMENT),
        apply,
        writes=False,
        result=result,
        route=_route("POST", "{key}/" + name),
        body=Body("VsetElement", {"element": "a"}),
        doc=doc,
        client=client,
    )


VSETS: tuple[OpSpec, ...] = (
    OpSpec(
        "vsets.add",
        (KEY, ELEMENT, VECTOR, ATTRIBUTES, QUANT, M, EF),
        vsets.add,
        writes=True,
        result=ADDED,
        doc=Doc(
            "Add or update an element's vector (Redis VADD)",
            "Whether the element is new.",
            {"added": True},
            "The set's dimension is fixed by its first write; a vector of another "
            "dimension is refused. Last writer wins on the vector and on the attributes; "
            "a concurrent remove of the element loses (add-wins).",
        ),
        route=_route("POST", "{key}/add"),
        body=Body(
            "VsetAdd",
            {"element": "a", "vector": [0.1, 0.2, 0.3], "attributes": {"year": 1984}},
        ),
        client=(
            Method(
                "add",
                "Add ``element`` with ``vector`` (numbers, or float32 bytes); True when new.",
                returns="added",
                cli=Verb("vadd", "add an element with its vector (prints 1 if new)"),
            ),
        ),
    ),
    OpSpec(
        "vsets.remove",
        (KEY, ELEMENT),
        vsets.remove,
        writes=True,
        result=REMOVED,
        doc=Doc(
            "Remove an element (Redis VREM)",
            "Whether it was there.",
            {"removed": True},
            "Observed-remove: a concurrent VADD or VSETATTR of the element survives.",
        ),
        route=_route("POST", "{key}/remove"),
        body=Body("VsetElement", {"element": "a"}),
        client=(
            Method(
                "remove",
                "Remove ``element``; True when it was there.",
                returns="removed",
                cli=Verb("vrem", "remove an element (prints 1 if it was there)"),
            ),
        ),
    ),
    OpSpec(
        "vsets.setattr",
        (KEY, ELEMENT, SET_ATTRIBUTES),
        vsets.set_attributes,
        writes=True,
        result=UPDATED,
        doc=Doc(
            "Replace an element's attributes (Redis VSETATTR)",
            "False when there is no such element.",
            {"updated": True},
            "Last writer wins; null removes them.",
        ),
        route=_route("POST", "{key}/setattr"),
        body=Body("VsetSetAttr", {"element": "a", "new_attributes": {"year": 1984}}),
        client=(
            Method(
                "set_attributes",
                "Replace ``element``'s attributes (None removes them); False if absent.",
                returns="updated",
                cli=Verb("vsetattr", "replace an element's attributes (JSON with --json)"),
            ),
        ),
    ),
    OpSpec(
        "vsets.delete",
        (KEY,),
        vsets.delete,
        writes=True,
        result=OK,
        doc=Doc("Delete a vector set", DELETED, {"ok": True}),
        route=_route("DELETE", "{key}"),
        client=(Method("delete", "Delete the vector set.", cli=DEL),),
    ),
    _search_row(
        "search",
        QUERY_VECTOR,
        vsets.search,
        "Similarity search by a vector (Redis VSIM with VALUES or FP32)",
        Body("VsetSearch", {"query": [0.1, 0.2, 0.3], "search_count": 5}),
        Method(
            "search",
            "The ``count`` (default 10) elements most similar to ``vector``: a list of "
            "{element, score[, attributes]}, best first; [] for an absent key.",
            returns="matches",
            absent=[],
            cli=Verb("vsim", "similarity search (one match per line: element score)"),
        ),
    ),
    _search_row(
        "similar",
        ELEMENT,
        vsets.similar,
        "Similarity search by an element's vector (Redis VSIM with ELE)",
        Body("VsetSimilar", {"element": "a", "search_count": 5}),
        Method(
            "similar",
            "The ``count`` (default 10) elements most similar to ``element`` (itself "
            "first): a list of {element, score[, attributes]}; [] for an absent key.",
            returns="matches",
            absent=[],
            cli=Verb("vsimele", "similarity search by an element (element score per line)"),
        ),
    ),
    OpSpec(
        "vsets.get",
        (KEY,),
        vsets.get,
        writes=False,
        result=VIEW,
        snapshot=True,
        doc=Doc(
            "Read a whole vector set",
            "Its dimension, size and every element with its vector and attributes.",
            {"dim": 2, "card": 1, "elements": {"a": {"vector": [0.5, 1.0], "attributes": None}}},
            f"A set of more than {limits.RANGE_MAX} elements is refused.",
        ),
        route=_route("GET", "{key}"),
        client=(
            Method(
                "get",
                "Every element: {element: {vector, attributes}}; {} for an absent key.",
                returns="elements",
                absent={},
            ),
        ),
    ),
    OpSpec(
        "vsets.card",
        (KEY,),
        vsets.card,
        writes=False,
        result=CARD,
        doc=Doc("How many elements (Redis VCARD)", "The count.", {"card": 3}),
        route=_route("GET", "{key}/card"),
        client=(
            Method(
                "card",
                "The number of elements; 0 for an absent key.",
                returns="card",
                absent=0,
                cli=Verb("vcard", "print how many elements a vector set has"),
            ),
        ),
    ),
    OpSpec(
        "vsets.dim",
        (KEY,),
        vsets.dim,
        writes=False,
        result=DIM,
        doc=Doc("The vectors' dimension (Redis VDIM)", "The dimension.", {"dim": 3}),
        route=_route("GET", "{key}/dim"),
        client=(
            Method(
                "dim",
                "The dimension; raises KeyNotFound for an absent key.",
                returns="dim",
                cli=Verb("vdim", "print a vector set's dimension"),
            ),
        ),
    ),
    _element_read(
        "emb",
        EMB,
        vsets.emb,
        Doc("An element's vector (Redis VEMB)", "The vector, as written.", {"vector": [0.5, 1]}),
        (
            Method(
                "vector",
                "``element``'s vector (float32 values, as written); None if absent.",
                returns="vector",
                absent=None,
                cli=Verb("vemb", "print an element's vector"),
            ),
        ),
    ),
    _element_read(
        "getattr",
        ATTRS,
        vsets.get_attributes,
        Doc(
            "An element's attributes (Redis VGETATTR)",
            "The attributes (null: none, or no such element).",
            {"attributes": {"year": 1984}},
        ),
        (
            Method(
                "attributes",
                "``element``'s attributes (a dict), or None.",
                returns="attributes",
                absent=None,
                cli=Verb("vgetattr", "print an element's attributes as JSON"),
            ),
        ),
    ),
    _element_read(
        "ismember",
        MEMBER,
        vsets.ismember,
        Doc("Whether an element is in the set (Redis VISMEMBER)", "Membership.", {"member": True}),
        (
            Method(
                "contains",
                "Whether ``element`` is in the set; False for an absent key.",
                returns="member",
                absent=False,
                cli=Verb("vismember", "print 1 if an element is in a vector set"),
            ),
        ),
    ),
    OpSpec(
        "vsets.randmember",
        (KEY, RAND_COUNT),
        vsets.randmember,
        writes=False,
        result=ELEMENTS,
        doc=Doc(
            "Random elements (Redis VRANDMEMBER)",
            "The elements drawn.",
            {"elements": ["a"]},
            "No count: one; count > 0: up to count distinct; count < 0: exactly -count, "
            "maybe repeated.",
        ),
        route=_route("POST", "{key}/randmember"),
        body=Body("VsetRand", {"rand_count": 2}),
        client=(
            Method(
                "random",
                "Random elements (see ``count``); [] for an absent key.",
                returns="elements",
                absent=[],
                cli=Verb("vrandmember", "print random elements of a vector set"),
            ),
        ),
    ),
    OpSpec(
        "vsets.info",
        (KEY,),
        vsets.info,
        writes=False,
        result=INFO,
        doc=Doc(
            "About a vector set and this replica's index (Redis VINFO)",
            "Dimension, size and index settings.",
            {
                "dim": 3,
                "card": 2,
                "quant": "q8",
                "m": 16,
                "ef_construction": 200,
                "index": "ready",
                "indexed": 2,
            },
        ),
        route=_route("GET", "{key}/info"),
        client=(
            Method(
                "info",
                "Dimension, size and this replica's index settings, as a dict.",
                returns=WHOLE,
                cli=Verb("vinfo", "print a vector set's dimension, size and index (JSON)"),
            ),
        ),
    ),
)
