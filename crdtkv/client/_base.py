"""What both clients share: options, sessions, failover, and routing by slot.

Every call is a plan (``crdtkv.client.routing``): the same generator runs under
both clients.  Unsharded, a call goes to the client's current URL and moves to
the next one of its list on a connection error or ``session_unavailable``.  On
its first call the client asks that URL for ``GET /v1/cluster/map``: when the
cluster is sharded it takes the map and its region (the region of the replica
it reached, unless ``region=`` was given) and sends each keyed call to its
slot's owner in that region, failing over to the same shard's replicas in the
other regions.  A 421 ``moved`` makes it read the map again (from the owner the
answer names, else any node it knows) and retry; a 421 ``ask`` is resent once
to the named replica with ``X-Crdtkv-Asking: 1``, the map unchanged; past
``REDIRECTS_MAX`` redirects a call raises ``ClusterUnavailable``.  A batch is
split by owner and put back in order.  The session is one token per shard.
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson

from crdtkv import limits
from crdtkv.client.model import Call, batch_call, result_of
from crdtkv.client.routing import (
    ASKING_HEADER,
    REDIRECTS_MAX,
    UNSCOPED,
    Failed,
    Parallel,
    Plan,
    Send,
    Sleep,
    format_tokens,
    op_keys,
    parse_tokens,
    token_replicas,
)
from crdtkv.cluster.map import ClusterMap, MapError, NodeAddr, Shard
from crdtkv.cluster.slots import key_slot
from crdtkv.errors import (
    BadRequest,
    ClusterUnavailable,
    CrdtkvError,
    SessionUnavailable,
    TryAgain,
)
from crdtkv.sessions import SESSION_HEADER, WAIT_HEADER
from crdtkv.tls import TlsError, client_context

ATTEMPTS_MAX = 6  # requests per call across all replicas, before giving up
MAP_FETCHES_MAX = 4  # replicas asked for the map after a redirect, at most
MAP_PATH = "/v1/cluster/map"
# A slot held for a move's last copy (503 try_again): asked again, here, after a
# growing pause, up to HOLDS_MAX times (about 15 s), then TryAgain reaches the caller.
HOLDS_MAX = 100
HOLD_SLEEP_S = 0.01
HOLD_SLEEP_MAX_S = 0.2
BACKOFF_BASE_S = 0.05
BACKOFF_MAX_S = 1.0
REFUSED_STATUS = (
    SessionUnavailable.status
)  # the replica served nothing: session_unavailable or stopped


def idempotent(call: Call) -> bool:
    """Safe to send twice: a retry after a connection dropped mid-request cannot
    double-apply it.  The op table says which ops are (counter changes are not);
    batches never are."""
    return call.idempotent


def _ssl_context(ca_file: str | None, context: ssl.SSLContext | None) -> ssl.SSLContext:
    """How https:// replicas are verified: ``context`` as given, else trusting
    ``ca_file`` only, else the system's CAs; host names are checked."""
    if context is not None:
        if ca_file is not None:
            raise BadRequest("give ca_file or ssl_context, not both")
        return context
    try:
        return client_context(ca_file, options=("ca_file", "", ""))
    except TlsError as e:
        raise BadRequest(str(e)) from None


class ClientBase:
    def __init__(
        self,
        urls: Sequence[str] | str,
        *,
        session_token: str | None = None,
        auth_token: str | None = None,
        timeout_s: float = 10.0,
        wait_ms: int | None = None,
        attempts: int = ATTEMPTS_MAX,
        ca_file: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        region: str | None = None,
    ) -> None:
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise BadRequest("a client needs at least one replica URL")
        for u in urls:
            parts = urlsplit(u)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise BadRequest(f"not an http(s) URL: {u!r}")
        if wait_ms is not None and not 0 <= wait_ms <= limits.WAIT_MS_MAX:
            raise BadRequest(f"wait_ms must be between 0 and {limits.WAIT_MS_MAX}")
        if region is not None and (not isinstance(region, str) or not region):
            raise BadRequest(f"region must be a region name of the cluster map, not {region!r}")
        self.urls = [u.rstrip("/") for u in urls]
        self._tokens = parse_tokens(session_token)  # shard id (UNSCOPED: none) -> token
        self._auth = auth_token
        self.timeout_s = timeout_s
        self.wait_ms = wait_ms
        self.attempts = max(1, attempts)
        # Built only when needed: loading the system's CAs takes tens of ms.
        https = any(u.startswith("https://") for u in self.urls)
        self.ssl_context: ssl.SSLContext | None = (
            _ssl_context(ca_file, ssl_context) if https or ca_file or ssl_context else None
        )
        self._current = 0
        self._rng = random.Random()
        # Sharding: learned on the first call (``_discover``) or from a 421.
        self._discovered = False
        self._map: ClusterMap | None = None
        self._region = region
        self._by_http: dict[str, NodeAddr] = {}
        self._alias: dict[str, str] = {}  # a URL of the list -> the replica id it answered as
        self._home: str | None = None  # the replica first reached: where keyless calls go
        self._pos: dict[str, int] = {}  # per shard: which of its replicas the client uses
        self._last_url: str | None = None

    # -- what a user sees ------------------------------------------------------------------
    @property
    def session_token(self) -> str | None:
        """The causal session token; pass it to ``Client(urls, session_token=...)`` to resume.
        A sharded cluster's session is one token per shard: ``"shard=token,..."``."""
        return format_tokens(self._tokens)

    @property
    def session_tokens(self) -> dict[str, str]:
        """The session's token per shard id (an unsharded cluster's under ``""``)."""
        return dict(self._tokens)

    @property
    def url(self) -> str:
        """The replica the client talks to now (sharded: the one it last sent a call to)."""
        if self._map is not None and self._last_url is not None:
            return self._last_url
        return self.urls[self._current]

    @property
    def cluster_map(self) -> ClusterMap | None:
        """The cluster map the client routes by; None until it has learned one (an
        unsharded cluster, or before the first call)."""
        return self._map

    @property
    def region(self) -> str | None:
        """The region whose replicas the client sends calls to (sharded clusters)."""
        return self._region

    @region.setter
    def region(self, region: str) -> None:
        if self._map is not None and region not in self._map.regions:
            raise BadRequest(_no_region(region, self._map))
        self._region = region
        self._pos.clear()  # start again from the new region's replicas

    # -- requests --------------------------------------------------------------------------
    def _send_step(self, url: str, call: Call, shard: str, asking: bool = False) -> Send:
        h = {"Accept": "application/json"}
        if call.body is not None:
            h["Content-Type"] = "application/json"
        token = self._tokens.get(shard)
        if token:
            h[SESSION_HEADER] = token
        if self.wait_ms is not None:
            h[WAIT_HEADER] = str(self.wait_ms)
        if self._auth:
            h["Authorization"] = f"Bearer {self._auth}"
        if asking:
            h[ASKING_HEADER] = "1"
        return Send(url, call.method, call.path, self._body(call), h, call.idempotent)

    def _map_step(self, url: str) -> Send:
        # No session token: the map is not part of the session (and must not wait for it).
        h = {"Accept": "application/json"}
        if self._auth:
            h["Authorization"] = f"Bearer {self._auth}"
        return Send(url, "GET", MAP_PATH, None, h, True, keep=False)

    @staticmethod
    def _body(call: Call) -> bytes | None:
        return None if call.body is None else orjson.dumps(call.body)

    def _absorb(self, status: int, headers: Any, shard: str = UNSCOPED) -> None:
        # Never adopt a token from a refusal (503: session_unavailable, or a
        # stopped replica): it served nothing, and a token merged with a
        # cut-off replica's vector could never be served anywhere else.
        if status == REFUSED_STATUS:
            return
        token = headers.get(SESSION_HEADER)
        if token:
            self._tokens[shard] = token

    def _backoff_s(self, attempt: int) -> float:
        cap = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt)
        return self._rng.uniform(cap / 2, cap)

    @staticmethod
    def _parse(data: bytes) -> Any:
        try:
            return orjson.loads(data) if data else None
        except orjson.JSONDecodeError:
            return None

    # -- the map ---------------------------------------------------------------------------
    def _node_at(self, url: str) -> NodeAddr | None:
        if self._map is None:
            return None
        nid = self._alias.get(url)
        if nid is not None and self._map.has_node(nid):
            return self._map.node(nid)
        return self._by_http.get(url)

    def _shard_at(self, url: str) -> str:
        """Whose token goes to ``url``: its shard's (UNSCOPED when unsharded or unknown)."""
        node = self._node_at(url)
        if node is None or self._map is None:
            return UNSCOPED
        return self._map.shard_of(node.id).id

    def _replicas(self, shard: Shard) -> list[NodeAddr]:
        """The shard's replicas in the order the client uses them: its region's first."""
        return sorted(shard.replicas, key=lambda n: (n.region != self._region, n.region))

    def _home_shard(self, m: ClusterMap) -> Shard:
        if self._home is not None and m.has_node(self._home):
            return m.shard_of(self._home)
        return m.shards[0]

    def _shard_for(self, keys: tuple[str, ...]) -> str:
        if self._map is None:
            return UNSCOPED
        if keys:
            return self._map.owner(key_slot(keys[0])).id
        return self._home_shard(self._map).id

    def _route(self, keys: tuple[str, ...]) -> str:
        """Where a call on ``keys`` goes now: its slot's owner in the client's region
        (or the replica failover moved to); unsharded, the current URL."""
        m = self._map
        if m is None:
            return self.urls[self._current]
        shard = m.owner(key_slot(keys[0])) if keys else self._home_shard(m)
        replicas = self._replicas(shard)
        return replicas[self._pos.get(shard.id, 0) % len(replicas)].http

    def _failover(self, url: str | None = None) -> None:
        node = self._node_at(url) if url is not None else None
        if node is None or self._map is None:
            self._current = (self._current + 1) % len(self.urls)
            return
        shard = self._map.shard_of(node.id)
        ids = [n.id for n in self._replicas(shard)]
        self._pos[shard.id] = (ids.index(node.id) + 1) % len(ids)

    def _learn(self, body: Any, url: str) -> bool:
        """Take the map of a ``GET /v1/cluster/map`` answer from ``url``; False if the
        answer holds none (an unsharded replica, or a malformed answer)."""
        if not isinstance(body, dict) or body.get("enabled") is not True:
            return False
        try:
            m = ClusterMap.from_json(body.get("map"))
        except MapError:
            return False
        self._discovered = True
        if self._map is None or m.epoch >= self._map.epoch:
            self._map = m
            self._by_http = {n.http: n for n in m.nodes()}
        m = self._map
        me = body.get("me")
        if isinstance(me, str) and m.has_node(me):
            self._alias[url] = me
            if self._home is None:
                self._home = me
            if self._region is None:
                self._region = m.node(me).region
        if self._region is None:
            self._region = m.regions[0]
        if self._region not in m.regions:
            raise BadRequest(_no_region(self._region, m))
        self._scope_token(m)
        return True

    def _scope_token(self, m: ClusterMap) -> None:
        """Give the session's unscoped token (from ``session_token=`` or from answers
        before the map was known) to the shard whose replicas its updates came from."""
        token = self._tokens.pop(UNSCOPED, None)
        if token is None:
            return
        replicas = token_replicas(token) or set()
        shards = {m.shard_of(r).id for r in replicas if m.has_node(r)}
        # None of the map's replicas (an empty token), or several: the home shard's.
        shard = shards.pop() if len(shards) == 1 else self._home_shard(m).id
        self._tokens.setdefault(shard, token)

    # -- plans -----------------------------------------------------------------------------
    def _discover(self) -> Plan:
        """Ask the current URL whether the cluster is sharded (once an answer comes)."""
        url = self.urls[self._current]
        reply = yield self._map_step(url)
        if isinstance(reply, Failed):
            return  # the call fails over as usual; the next call asks again
        self._discovered = True
        if reply.status == 200:
            self._learn(self._parse(reply.data), url)

    def _refresh(self, hint: str | None) -> Plan:
        """Read the map again: from ``hint`` (the owner a redirect named), else from the
        region's replicas, the URL list, any replica of the map."""
        order: list[str] = [hint] if hint else []
        if self._map is not None:
            order += [n.http for n in self._map.nodes() if n.region == self._region]
        order += self.urls
        if self._map is not None:
            order += [n.http for n in self._map.nodes()]
        asked: set[str] = set()
        for url in order:
            if url in asked:
                continue
            if len(asked) >= MAP_FETCHES_MAX:
                break
            asked.add(url)
            reply = yield self._map_step(url)
            if isinstance(reply, Failed) or reply.status != 200:
                continue
            if self._learn(self._parse(reply.data), url):
                return

    def _plan(self, call: Call) -> Plan:
        if not self._discovered:
            yield from self._discover()
        return (yield from self._run(call))

    def _run(self, call: Call, pin: str | None = None, asking: bool = False) -> Plan:
        """One call: failover over replicas (``attempts`` requests), redirects followed
        (``REDIRECTS_MAX``).  ``pin``: the first request goes there (with ``asking``)."""
        last: Exception | None = None
        redirects = 0
        holds = 0
        attempt = 0
        while attempt < self.attempts:
            if pin is not None:
                url, ask, pin, asking = pin, asking, None, False
            else:
                url, ask = self._route(call.keys), False
            shard = self._shard_at(url)
            self._last_url = url
            reply = yield self._send_step(url, call, shard, ask)
            if isinstance(reply, Failed):
                if reply.reached and not call.idempotent:
                    raise ClusterUnavailable(
                        f"{url}: {reply.error!r}; the request may or may not have been applied"
                    ) from reply.error
                last = reply.error if isinstance(reply.error, Exception) else None
            else:
                self._absorb(reply.status, reply.headers, shard)
                body = self._parse(reply.data)
                if reply.status == TryAgain.status and _held(body):
                    # The slot's last copy to its new shard is in flight: a moment, here.
                    holds += 1
                    if holds > HOLDS_MAX:
                        raise TryAgain(str((body.get("error") or {}).get("message")))
                    pin = url
                    yield Sleep(min(HOLD_SLEEP_S * holds, HOLD_SLEEP_MAX_S))
                    continue
                redirect = _redirect(body) if reply.status == 421 else None
                if redirect is not None:
                    code, where, slot = redirect
                    redirects += 1
                    if redirects > REDIRECTS_MAX:
                        raise ClusterUnavailable(_too_many(slot, code, url, where))
                    if code == "ask":  # once, there, the map unchanged
                        pin, asking = where, True
                        continue
                    yield from self._refresh(where)
                    if self._route(call.keys) == url:  # the map still says here: go there
                        pin = where
                    continue
                try:
                    return result_of(call, reply.status, body)
                except SessionUnavailable as e:
                    last = e
            self._failover(url)
            yield Sleep(self._backoff_s(attempt))
            attempt += 1
        if isinstance(last, SessionUnavailable):
            raise last
        raise ClusterUnavailable(f"no replica answered ({last!r})")

    def _plan_batch(self, ops: list[dict[str, Any]]) -> Plan:
        """A batch: its ops split by the shard that owns their key, one request per
        shard, the results put back in order; ops answered ``moved`` or ``ask`` are
        sent again where the answer says (the map read again for ``moved``)."""
        ops = list(ops)
        if not self._discovered:
            yield from self._discover()
        results: list[Any] = [None] * len(ops)
        keys = [op_keys(op) for op in ops]
        todo = list(range(len(ops)))
        asked: dict[int, str] = {}
        redirects = 0
        holds = 0
        while True:
            groups: dict[tuple[str, bool], list[int]] = {}
            for i in todo:
                group = (asked[i], True) if i in asked else (self._shard_for(keys[i]), False)
                groups.setdefault(group, []).append(i)
            plans = [
                self._run(
                    batch_call([ops[i] for i in idx], keys[idx[0]]),
                    pin=where if ask else None,
                    asking=ask,
                )
                for (where, ask), idx in groups.items()
            ]
            outs = yield Parallel(plans)
            for out in outs:
                if isinstance(out, BaseException):
                    raise out
            todo, asked, hint, held = [], {}, None, []
            for idx, out in zip(groups.values(), outs, strict=True):
                if not isinstance(out, list) or len(out) != len(idx):
                    raise CrdtkvError("a replica answered a batch with the wrong number of results")
                for i, result in zip(idx, out, strict=True):
                    if _held(result) and holds < HOLDS_MAX:
                        held.append(i)  # sent again shortly, where its key routes
                        results[i] = result
                        continue
                    redirect = _redirect(result)
                    if redirect is None:
                        results[i] = result
                        continue
                    code, where, _ = redirect
                    todo.append(i)
                    if code == "ask":
                        asked[i] = where
                    else:
                        hint = where
            if held:
                holds += 1
                yield Sleep(min(HOLD_SLEEP_S * holds, HOLD_SLEEP_MAX_S))
                if not todo:
                    todo = sorted(held)
                    continue
                todo = sorted(todo + held)
            if not todo:
                return results
            redirects += 1
            if redirects > REDIRECTS_MAX:
                for i in todo:
                    slot = key_slot(keys[i][0]) if keys[i] else None
                    message = _too_many(slot, "moved", self._route(keys[i]), "")
                    results[i] = {"error": {"code": ClusterUnavailable.code, "message": message}}
                return results
            if hint is not None:
                yield from self._refresh(hint)
            todo.sort()


def _held(body: Any) -> bool:
    """Whether ``body`` is a ``try_again`` error: a slot held for its move's last copy."""
    err = body.get("error") if isinstance(body, dict) else None
    return isinstance(err, dict) and err.get("code") == TryAgain.code


def _redirect(body: Any) -> tuple[str, str, int | None] | None:
    """(code, url, slot) of a 421 ``moved``/``ask`` error object; None for anything else."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict) or err.get("code") not in ("moved", "ask"):
        return None
    url = err.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    slot = err.get("slot")
    return str(err["code"]), url.rstrip("/"), slot if isinstance(slot, int) else None


def _too_many(slot: int | None, code: str, url: str, where: str) -> str:
    to = f" to {where}" if where else ""
    return (
        f"gave up after {REDIRECTS_MAX} redirects for slot {slot} (last: {code} from {url}{to}):"
        " the replicas disagree about who owns it; compare their GET /v1/cluster/map"
    )


def _no_region(region: str, m: ClusterMap) -> str:
    return f"region {region!r} is not in the cluster map (its regions: {', '.join(m.regions)})"
