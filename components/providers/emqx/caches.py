"""Emptying EMQX's authorization caches after the stack narrows what a client may do.

EMQX caches each connected client's authorization decisions in its connection process
(`authorization.cache`: 32 entries, 1 minute by default; reference 14.3). Changing the sources
drains those caches, but writing the built-in database's rule tables does not
(`emqx_authz_mnesia` has no drain_cache). So after the stack writes or deletes rules it calls
`DELETE /authorization/cache`, which marks every entry cached before now, on every node, as
expired; connected clients are re-checked on their next publish or subscribe, and with
`deny_action: disconnect` a client whose access was taken away is disconnected then.

EMQX 6.2 also caches backend query results node-wide (`authorization.node_cache`, on by default,
1 minute); the built-in database does not use it, but a `postgresql` source does, so it is reset
too (`POST /authorization/node_cache/reset`; 5.8 has no such path and answers 404).
"""

from __future__ import annotations

from components.providers.emqx.client import EmqxApi


def drain_authorization_caches(api: EmqxApi) -> None:
    api.call("DELETE", "/authorization/cache", accept=(204,))
    api.call("POST", "/authorization/node_cache/reset", accept=(204, 404))
