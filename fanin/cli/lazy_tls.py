"""Import aiohttp without paying for its TLS set-up at start-up.

aiohttp builds two default TLS contexts when it is imported, and each loads the system
CA bundle: about 0.1 s of CPU, a large share of a short `fanin stream` run that may never
speak TLS. The `fanin` command imports aiohttp with that load deferred: the two contexts
are the same objects with the same settings, and the CA calls they asked for are replayed
on each context right before its first TLS handshake (wrap_bio / wrap_socket), so no
handshake ever runs without them. Only this import is affected; every other context is
built as usual. The Dify plugin and library users import aiohttp the normal way.
"""

from __future__ import annotations

import ssl
import sys

__all__ = ["import_aiohttp"]


def _defer(context: ssl.SSLContext, method, args: tuple) -> None:
    """Record a CA-loading call on `context`, and give the context instance-level
    wrap_bio / wrap_socket that replay the recorded calls once, then step aside."""
    state = context.__dict__
    state.setdefault("_fanin_deferred_cas", []).append((method, args))
    if "wrap_bio" in state:
        return

    def load() -> None:
        del context.wrap_bio, context.wrap_socket
        for recorded, recorded_args in state.pop("_fanin_deferred_cas"):
            recorded(context, *recorded_args)

    def wrap_bio(*a, **k):
        load()
        return context.wrap_bio(*a, **k)

    def wrap_socket(*a, **k):
        load()
        return context.wrap_socket(*a, **k)

    context.wrap_bio = wrap_bio
    context.wrap_socket = wrap_socket


def import_aiohttp() -> None:
    """Import aiohttp (once) with its import-time TLS contexts' CA loading deferred."""
    if "aiohttp" in sys.modules:
        return
    cls = ssl.SSLContext
    real_load, real_paths = cls.load_default_certs, cls.set_default_verify_paths
    cls.load_default_certs = lambda self, purpose=ssl.Purpose.SERVER_AUTH: _defer(self, real_load, (purpose,))
    cls.set_default_verify_paths = lambda self: _defer(self, real_paths, ())
    try:
        import aiohttp  # noqa: F401
    finally:
        cls.load_default_certs, cls.set_default_verify_paths = real_load, real_paths
