"""Python clients for crdtkv: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

Both keep one causal session (``session_token``), move to the next replica
in their list on a connection error or ``session_unavailable``, and raise
errors from the ``crdtkv.errors`` tree.  In a sharded cluster they learn the
map on their first call, send each key to its slot's owner in their region,
follow 421 redirects, split batches by shard and keep one token per shard
(``crdtkv.client._base``).
"""

from crdtkv.client.aio import AsyncClient
from crdtkv.client.sync import Client

__all__ = ["AsyncClient", "Client"]
