"""Typed keys for what the app and each request carry (aiohttp ``AppKey``/``RequestKey``)."""

from __future__ import annotations

from aiohttp import web

from crdtkv.api.metrics import ApiMetrics, PeersStatus
from crdtkv.auth import Auth, User
from crdtkv.config import ServeConfig
from crdtkv.node import Node
from crdtkv.sessions import SessionToken, TokenSigner

__all__ = [
    "AUTH",
    "CONFIG",
    "METRICS",
    "NODE",
    "OUT_TOKEN",
    "PEERS_STATUS",
    "ROUTE_WRITES",
    "SESSION",
    "SIGNER",
    "USER",
]

NODE = web.AppKey("crdtkv.node", Node)  # the replica and its storage
CONFIG = web.AppKey("crdtkv.config", ServeConfig)  # auth token, body limit, ...
SIGNER = web.AppKey("crdtkv.signer", TokenSigner)  # signs and verifies session tokens
TOKEN_CACHE = web.AppKey("crdtkv.token_cache", list)  # [key, token]: the last token signed
METRICS = web.AppKey("crdtkv.metrics", ApiMetrics)  # request metrics; renders node.metrics
PEERS_STATUS: web.AppKey[PeersStatus | None] = web.AppKey("crdtkv.peers_status")  # replication
AUTH = web.AppKey("crdtkv.auth", Auth)  # the users in force (SIGHUP swaps them)
# Whether each route writes (the op table's ``writes``); /v1/batch: per op, in its handler.
ROUTE_WRITES = web.AppKey("crdtkv.route_writes", dict)
SESSION = web.RequestKey("crdtkv.session", SessionToken)  # the request's verified token, if any
# The token the node core answered with (merged with what the replica applied).
OUT_TOKEN = web.RequestKey("crdtkv.out_token", SessionToken)
USER = web.RequestKey("crdtkv.user", User)  # who sent the request, when auth is on
