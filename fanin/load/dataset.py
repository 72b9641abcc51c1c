"""`--dataset FILE.jsonl`: the request bodies a request-mode run sends, read and checked
before any load starts, so a bad line is one clear error (file and line), never a failure
halfway through a run.

Each non-blank line is a JSON object sent as the body, or `{"body": ..., "headers": {...}}`
(an object holding `body` and nothing but `headers` besides) to add headers per request; a
`body` that is a string is sent as it is (e.g. a form body), anything else as JSON."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import orjson

from fanin.errors import UsageError
from fanin.stream import MISSING, Request

__all__ = ["DatasetItem", "load_dataset", "RequestSource"]

_WRAPPER_KEYS = frozenset({"body", "headers"})


@dataclass(frozen=True)
class DatasetItem:
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    json: bool = True  # sent with Content-Type: application/json


def _item(value: object, where: str) -> DatasetItem:
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a JSON object (a request body), got {type(value).__name__}")
    if "body" in value and set(value) <= _WRAPPER_KEYS:
        headers = value.get("headers") or {}
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise UsageError(f"{where}: \"headers\" must be an object of text values")
        body = value["body"]
        if isinstance(body, str):
            return DatasetItem(body.encode(), tuple(headers.items()), json=False)
        return DatasetItem(orjson.dumps(body), tuple(headers.items()))
    return DatasetItem(orjson.dumps(value))


def load_dataset(path: str) -> list[DatasetItem]:
    """Every line of `path` as a DatasetItem; UsageError naming file and line on the first bad one."""
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise UsageError(f"--dataset: cannot read {path}: {exc.strerror}") from None
    items = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"--dataset {path}:{number}"
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise UsageError(f"{where}: not valid JSON ({str(exc).splitlines()[0]})") from None
        items.append(_item(value, where))
    if not items:
        raise UsageError(f"--dataset {path}: the file holds no request")
    return items


class RequestSource:
    """The k-th request of a run: URL k mod len(URLs), bodies in file order (cycled), or in an
    order shuffled anew for each pass over the file with a seeded generator."""

    def __init__(self, bases: list[Request], items: list[DatasetItem] | None, *,
                 shuffle: bool = False, seed: int | None = None) -> None:
        self.bases = bases
        self.items = items
        self.shuffle = shuffle
        self.rng = random.Random(seed)
        self.order: list[int] = []
        self.count = 0
        self._built: dict[tuple[int, int], Request] = {}

    def validate(self) -> None:
        """Build (and so check) the request for every URL x dataset line before any load."""
        for u in range(len(self.bases)):
            for i in range(len(self.items) if self.items else 1):
                self._request(u, i).validate()

    def _request(self, url_index: int, item_index: int) -> Request:
        key = (url_index, item_index)
        request = self._built.get(key)
        if request is None:
            base = self.bases[url_index]
            if self.items is None:
                request = base
            else:
                item = self.items[item_index]
                headers = dict(base.headers)
                if item.json and not any(k.lower() == "content-type" for k in headers):
                    headers["Content-Type"] = "application/json"
                headers.update(item.headers)
                request = dataclasses.replace(base, body=item.body, json=MISSING, headers=headers)
            self._built[key] = request
        return request

    def next(self) -> Request:
        k = self.count
        self.count += 1
        if self.items is None:
            return self._request(k % len(self.bases), 0)
        if not self.order:
            self.order = list(range(len(self.items)))
            if self.shuffle:
                self.rng.shuffle(self.order)
            self.order.reverse()  # popped from the end
        return self._request(k % len(self.bases), self.order.pop())
