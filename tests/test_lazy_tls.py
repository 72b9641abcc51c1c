"""The `fanin` command imports aiohttp with its CA loading deferred (fanin/cli/lazy_tls.py):
the CAs must be in place before any handshake, exactly as aiohttp would have loaded them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHECK = r"""
import ssl
from fanin.cli.lazy_tls import import_aiohttp
import_aiohttp()
import aiohttp.connector as connector

expected = ssl.create_default_context().cert_store_stats()["x509_ca"]
for context, verified in ((connector._SSL_CONTEXT_VERIFIED, True), (connector._SSL_CONTEXT_UNVERIFIED, False)):
    assert context.cert_store_stats()["x509_ca"] == 0, "CAs were loaded at import"
    assert (context.verify_mode == ssl.CERT_REQUIRED) is verified and context.check_hostname is verified
    context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="example.com")
    assert context.cert_store_stats()["x509_ca"] == expected, "CAs missing at the first handshake"
    assert "wrap_bio" not in vars(context)  # replayed once, then the context is plain again
    context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="example.com")
assert ssl.SSLContext.load_default_certs.__module__ == "ssl"  # the patch is gone after the import
print("ok", expected)
"""


def test_cas_load_before_the_first_handshake_and_nothing_else_changes():
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ok")
