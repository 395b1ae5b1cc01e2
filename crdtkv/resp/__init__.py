"""The Redis protocol (RESP2 and RESP3) front end of a replica.

- ``crdtkv.resp.values``: reply values and their encoding (pure);
- ``crdtkv.resp.args``: argument parsing helpers shared by the op table's RESP
  column and the commands of this package (pure);
- ``crdtkv.resp.commands``: the command table: the op table's RESP column plus
  the connection, server and composite commands;
- ``crdtkv.resp.server``: the asyncio server (hiredis parses requests).

Nothing is imported here, so the op table can import ``values`` and ``args``
without pulling in the server.
"""
