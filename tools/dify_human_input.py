"""Human input (Dify's Human Input node), for the API-key app tool: fetch a paused run's form,
submit the answer, and the small JSON calls they (and the stop) make.

Dify's documented flow: the run streams `human_input_required` (with a `form_token`, null for
e-mail or console delivery) and `workflow_paused`, and its stream ends; `GET
/form/human_input/{form_token}` gives the form; `POST` the same path with `{inputs, action,
user}` resumes the run (412 when the form was already submitted or has expired); `GET
/workflow/{workflow_run_id}/events?continue_on_pause=true` streams the rest."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Any

import aiohttp
import orjson
from yarl import URL

from fanin.embed.bridge import get_bridge
from fanin.embed.netguard import AddressGuard
from fanin.merge import make_session

from tools.common import ToolFailure

__all__ = ["call_app", "fetch_form", "submit_form", "choose_action", "FORM_PATH"]

FORM_PATH = "/form/human_input/{token}"
CALL_TIMEOUT = 10.0
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_.~-]{1,256}")
_BODY_LIMIT = 1024 * 1024


def call_app(api_base: str, api_key: str, method: str, path: str, guard: AddressGuard, *,
             body: dict[str, Any] | None = None, timeout: float = CALL_TIMEOUT) -> tuple[int, dict[str, Any]]:
    """One JSON call to the app's API (the same destination rules as every stream): its HTTP
    status and JSON object body ({} when there is none). Raises ToolFailure when it cannot
    be made, with one line that never carries the key."""
    url = api_base + path

    async def send() -> tuple[int, dict[str, Any]]:
        await guard.check_hop(URL(url))
        async with make_session(socket_factory=guard.socket_factory) as session:
            async with session.request(method, url, json=body, allow_redirects=False,
                                       timeout=aiohttp.ClientTimeout(total=timeout),
                                       headers={"Authorization": f"Bearer {api_key}"}) as resp:
                raw = await resp.content.read(_BODY_LIMIT)
                try:
                    parsed = orjson.loads(raw) if raw else {}
                except orjson.JSONDecodeError:
                    parsed = {}
                return resp.status, parsed if isinstance(parsed, dict) else {}

    try:
        return get_bridge().run(send, deadline=time.monotonic() + timeout + 1)
    except Exception as exc:   # one line, no key (it is only ever in a header)
        raise ToolFailure(f"could not reach the Dify app for {path.split('/{')[0]}: {type(exc).__name__}") from None


def _form_path(token: str) -> str:
    if not _SAFE_TOKEN.fullmatch(token):
        raise ValueError("form_token: not a Dify form token (letters, digits, - _ . ~ only)")
    return FORM_PATH.format(token=token)


def _closed(status: int, body: dict[str, Any]) -> ToolFailure:
    said = f" ({body.get('code')}: {body.get('message')})" if body.get("code") else ""
    return ToolFailure(f"form_token: this human input form was already submitted or has expired (HTTP 412){said};"
                       " nothing was sent")


def _iso(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, timezone.utc).isoformat()
    return value


def fetch_form(api_base: str, api_key: str, token: str, guard: AddressGuard) -> dict[str, Any]:
    """The form's definition as the `form` variable: content, inputs, actions, defaults,
    expiration (ISO 8601). ToolFailure on 404 (no such form), 412 (closed) and other refusals."""
    status, body = call_app(api_base, api_key, "GET", _form_path(token), guard)
    if status == 412:
        raise _closed(status, body)
    if status == 404:
        raise ToolFailure("form_token: Dify knows no such human input form (HTTP 404); check form_token")
    if status != 200:
        said = f" {body.get('code')}: {body.get('message')}" if body.get("code") else ""
        raise ToolFailure(f"the Dify app refused to show the human input form (HTTP {status}{said})")
    actions = body.get("user_actions") if isinstance(body.get("user_actions"), list) else body.get("actions")
    return {"form_token": token, "form_content": body.get("form_content") or "",
            "inputs": body.get("inputs") if isinstance(body.get("inputs"), list) else [],
            "actions": actions if isinstance(actions, list) else [],
            "resolved_default_values": body.get("resolved_default_values") or {},
            "expiration_time": _iso(body.get("expiration_time")) or ""}


def choose_action(form: dict[str, Any], wanted: str) -> str:
    """The action to submit: the one named (it must be the form's), or the form's only one."""
    ids = [str(a.get("id")) for a in form.get("actions", []) if isinstance(a, dict) and a.get("id")]
    if wanted:
        if ids and wanted not in ids:
            raise ValueError(f"form_action: this form's actions are {', '.join(ids)}; got {wanted[:40]!r}")
        return wanted
    if len(ids) == 1:
        return ids[0]
    raise ValueError(f"form_action: choose one of this form's actions: {', '.join(ids) or '(none listed)'}")


def submit_form(api_base: str, api_key: str, token: str, inputs: dict[str, Any], action: str, user: str,
                guard: AddressGuard) -> None:
    """POST the answer; the run resumes in Dify. ToolFailure with one line when refused."""
    status, body = call_app(api_base, api_key, "POST", _form_path(token), guard,
                            body={"inputs": inputs, "action": action, "user": user})
    if status == 412:
        raise _closed(status, body)
    if status not in (200, 201, 204):
        said = f" {body.get('code')}: {body.get('message')}" if body.get("code") else ""
        raise ToolFailure(f"the Dify app refused the form's answer (HTTP {status}{said}); check form_inputs and"
                          " form_action")
