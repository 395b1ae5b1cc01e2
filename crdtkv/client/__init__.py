"""Python clients for crdtkv: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

Both keep one causal session (``session_token``), move to the next replica
in their list on a connection error or ``session_unavailable``, and raise
errors from the ``crdtkv.errors`` tree.
"""

from crdtkv.client.aio import AsyncClient
from crdtkv.client.sync import Client

__all__ = ["AsyncClient", "Client"]
