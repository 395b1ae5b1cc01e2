"""The HTTP shell of a replica (aiohttp): the public API of docs/api.md over a ``Node``.

``make_app(node, config)`` builds the app; routes, error mapping, limits,
metrics and codecs live in their own modules.
"""

from crdtkv.api.app import SESSION_HEADER, WAIT_HEADER, make_app

__all__ = ["SESSION_HEADER", "WAIT_HEADER", "make_app"]
