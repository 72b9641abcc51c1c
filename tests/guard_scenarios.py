"""Destination-guard scenarios, run by test_guard_hops.py inside a network namespace that has
only loopback (`unshare -rnm`), where /etc/hosts maps `metadata.test` to 169.254.169.254 and `nat64local.test` to the
local-use NAT64 form of it. Even a
guard that failed could reach nothing but loopback here. Prints one JSON object: scenario name
-> outcome, with the targets the loopback forward proxy was asked for."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import quote

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fanin.embed.netguard import AddressGuard  # noqa: E402
from loopback_apps import echo_app, forward_proxy_app, serve  # noqa: E402
from tools.common import ToolFailure  # noqa: E402
from tools.sse_core import plan_sse_request, run_sse_request  # noqa: E402

TOKEN = "guard-scenario-token-0123456789"


def run_tool(url: str, proxy: str | None, seen: list[str]) -> dict:
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        os.environ.pop(name, None)
    if proxy:
        os.environ["HTTP_PROXY"] = proxy
    seen.clear()
    plan = plan_sse_request({"url": url, "auth_type": "bearer", "auth_token": TOKEN, "retry_attempts": 0,
                             "timeout": 10, "max_duration": 20})
    try:
        outputs = list(run_sse_request(plan, guard=AddressGuard()))
    except ToolFailure as exc:
        return {"failed": True, "message": str(exc), "proxy_saw": list(seen)}
    variables = {o[1]: o[2] for o in outputs if o[0] == "variable"}
    return {"failed": False, "status": variables["status"], "answer": variables["answer"], "proxy_saw": list(seen)}


def main() -> None:
    seen: list[str] = []
    results = {}
    with serve(echo_app("A")) as a_port, serve(forward_proxy_app(seen)) as proxy_port:
        a = f"http://127.0.0.1:{a_port}"
        proxy = f"http://127.0.0.1:{proxy_port}"

        def redirect_to(target: str) -> str:
            return f"{a}/to?url={quote(target, safe='')}"

        scenarios = {
            "proxy_redirect_literal": (redirect_to("http://169.254.169.254/latest/meta-data/iam"), proxy),
            "proxy_redirect_name": (redirect_to("http://metadata.test/latest/meta-data/iam"), proxy),
            "proxy_redirect_nat64": (redirect_to("http://[64:ff9b::a9fe:a9fe]/latest/"), proxy),
            "proxy_redirect_6to4": (redirect_to("http://[2002:a9fe:a9fe::1]/latest/"), proxy),
            "proxy_redirect_unresolvable": (redirect_to("http://nowhere.invalid/latest/"), proxy),
            "proxy_first_url_name": ("http://metadata.test/latest/meta-data/iam", proxy),
            "proxy_allowed": (redirect_to(f"{a}/echo"), proxy),
            "direct_redirect_name": (redirect_to(f"http://metadata.test:{a_port}/echo"), None),
            "direct_redirect_nat64": (redirect_to("http://[64:ff9b::a9fe:a9fe]/latest/"), None),
            # RFC 8215 local-use NAT64: as an IP literal (/96 and /64 layouts) and behind a name
            "proxy_redirect_nat64_local": (redirect_to("http://[64:ff9b:1::a9fe:a9fe]/latest/"), proxy),
            "direct_redirect_nat64_local": (redirect_to("http://[64:ff9b:1::a9fe:a9fe]/latest/"), None),
            "direct_redirect_nat64_local_64": (redirect_to("http://[64:ff9b:1:0:a9:fea9:fe00:0]/latest/"), None),
            "direct_first_url_nat64_local_name": (f"http://nat64local.test:{a_port}/echo", None),
            "proxy_first_url_nat64_local_name": ("http://nat64local.test/latest/", proxy),
        }
        for name, (url, via) in scenarios.items():
            results[name] = run_tool(url, via, seen)
    sys.stdout.write(orjson.dumps(results).decode())


if __name__ == "__main__":
    main()
