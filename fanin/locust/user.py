"""SSE load tests on Locust (`pip install sse-fanin[locust]`): fanin's engine under Locust's
runner, master/workers and `--processes` included.

    from locust import task
    from fanin.locust import SSEUser

    class Reader(SSEUser):
        host = "http://127.0.0.1:8765"

        @task
        def hold(self):
            self.sse.hold("/stream?count=0&rate=10&ts=1", latency_field="ts")

One Locust user is one stream slot. The engine runs on the bridge's asyncio loop (one real
OS thread per process, started on first use, so nothing starts at import and Locust may
fork after importing this). `hold()` sends nothing per event into gevent: the engine's
hooks record into fanin.load's HDR histograms on the loop thread. `stream()` hands one
batch per network read to the user's greenlet. Once a second a greenlet folds the new
samples into Locust's stats in bulk; workers ship their HDR snapshots to the master with
`report_to_master`, and the master (or the single process) prints fanin's exact report at
the end, with `--sse-json FILE` and `--sse-threshold EXPR` (exit status 1 on a breach).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.lock
import orjson
from locust import User, events
from locust.runners import MasterRunner, WorkerRunner

from fanin.embed.bridge import get_bridge
from fanin.errors import UsageError
from fanin.events import Event, SourceReport
from fanin.extract import parse_path
from fanin.measure.report import parse_threshold
from fanin.measure.observer import make_load_session
from fanin.locust.recorder import LocustObserver, LoopRecorder
from fanin.locust.report import fire_records, fold_samples, merged_report, print_report
from fanin.stream import MISSING, Request, SSEStream, StreamConfig

__all__ = ["SSEUser", "SSEClient"]

FOLD_EVERY = 1.0  # seconds between two folds of the loop thread's figures into Locust's stats
REPORT_KEY = "fanin_sse"  # the key of a worker's snapshot in its report_to_master data
_REQUEST_FIELDS = ("method", "headers", "params", "body", "json", "auth_type", "auth_token", "auth_header")
_CONFIG_FIELDS = ("connect_timeout", "idle_timeout", "retries", "reconnect", "max_line_size", "last_event_id",
                  "default_retry_ms", "max_backoff", "stop_on")


class _ProcessState:
    """This process's share: the aiohttp session (made once, on the loop thread, under a
    gevent lock), the loop-thread recorder, the folding greenlet and the latest snapshot."""

    def __init__(self) -> None:
        self.lock = gevent.lock.Semaphore()
        self.session = None
        self.recorder: LoopRecorder | None = None
        self.folder: gevent.Greenlet | None = None
        self.environment = None
        self.snapshot: dict[str, Any] = {}  # this process, cumulative: {name: LoadMetrics snapshot}
        self.worker_snapshots: dict[str, dict[str, Any]] = {}  # master: latest per worker
        self.started = 0.0
        self.stopped = 0.0
        self.peak_users = 0

    def ready(self, environment) -> tuple[Any, LoopRecorder]:
        """The session and recorder, made on first use in this process."""
        if self.session is None:
            with self.lock:  # another user greenlet may be making them right now
                if self.session is None:
                    bridge = get_bridge()
                    self.recorder = bridge.call(LoopRecorder)
                    self.session = bridge.call(make_load_session)
                    self.environment = environment
                    self.folder = gevent.spawn(self._fold_forever)
        return self.session, self.recorder

    def _fold_forever(self) -> None:
        while True:
            gevent.sleep(FOLD_EVERY)
            self.fold()

    def fold(self) -> None:
        """Hand what the loop thread gathered to Locust: records fired, samples folded."""
        if self.recorder is None or self.environment is None:
            return
        taken = get_bridge().call(self.recorder.take)
        fire_records(self.environment, taken["records"])
        for measure, name, samples in taken["folds"]:
            fold_samples(self.environment, measure, name, samples)
        self.snapshot = taken["snapshot"]

    def finish(self) -> None:
        """At test_stop: the last fold (nothing of the last second is lost), then the session
        closed on the loop thread. A new test starts afresh."""
        if self.folder is not None:
            self.folder.kill(block=True)
            self.folder = None
        if self.session is not None:
            self.fold()
            session, self.session = self.session, None
            get_bridge().run(session.close)

    def reset(self) -> None:
        self.__init__()


_state = _ProcessState()
os.register_at_fork(after_in_child=_state.reset)  # Locust's --processes forks after import


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    request: dict[str, Any] = {}
    config: dict[str, Any] = {}
    for key, value in options.items():
        if key == "data":
            key = "body"
        if key == "bearer":
            request.update(auth_type="bearer", auth_token=value)
        elif key == "api_key":
            request.update(auth_type="api_key", auth_token=value)
        elif key == "api_key_header":
            request["auth_header"] = value
        elif key in _REQUEST_FIELDS:
            request[key] = value
        elif key in _CONFIG_FIELDS:
            config[key] = value
        else:
            known = ", ".join(sorted({*_REQUEST_FIELDS, *_CONFIG_FIELDS, "data", "bearer", "api_key",
                                      "api_key_header"}))
            raise UsageError(f"fanin.locust: unknown request option {key!r} (known: {known})")
    if "params" in request and isinstance(request["params"], dict):
        request["params"] = list(request["params"].items())
    request.setdefault("json", MISSING)
    return request, config


class SSEClient:
    """`self.sse` of an SSEUser: `hold()` for metrics, `stream()` for content."""

    def __init__(self, user: User) -> None:
        self.user = user

    def _prepare(self, url: str, name: str | None, latency_field: str | None,
                 options: dict[str, Any]) -> tuple[SSEStream, LocustObserver]:
        given = url
        if url.startswith("/"):
            host = (self.user.host or "").rstrip("/")
            if not host:
                raise UsageError(f"fanin.locust: {url!r} is relative, and the user has no host (set host or -H)")
            url = host + url
        request_options, config_options = _split_options(options)
        request = Request(url=url, **request_options)
        config = StreamConfig(**config_options)
        request.validate()
        config.validate()
        latency_path = parse_path(latency_field) if latency_field else None
        session, recorder = _state.ready(self.user.environment)
        # made on the loop thread: it adds to the recorder's state, which only that thread touches
        observer = get_bridge().call(LocustObserver, recorder, name or request.secrets.display_url(given), latency_path)
        return SSEStream(session, 0, request, config, observer), observer

    def hold(self, url: str, name: str | None = None, *, latency_field: str | None = None,
             **request_options: Any) -> SourceReport:
        """Hold one stream until it ends (after the engine's reconnects) or the test stops;
        returns the engine's report of it. Nothing per event enters gevent: connect, first
        event and connection end become Locust requests; gaps (and, with `latency_field`,
        a dotted path to a send timestamp in the JSON data, end-to-end latency) go into
        HDR histograms folded into Locust once a second."""
        stream, observer = self._prepare(url, name, latency_field, request_options)
        return get_bridge().run(lambda: stream.run(observer.deliver))

    @contextlib.contextmanager
    def stream(self, url: str, name: str | None = None, *, latency_field: str | None = None,
               **request_options: Any) -> Iterator[Iterator[Event]]:
        """`with self.sse.stream(url) as events: for event in events: ...` - every event
        (fanin.events.Event), measured as hold() measures. One batch per network read
        crosses into the user's greenlet; leaving the block closes the stream."""
        stream, observer = self._prepare(url, name, latency_field, request_options)

        async def produce(put) -> SourceReport:
            async def deliver(batch) -> None:
                await observer.deliver(batch)
                await put(batch)

            return await stream.run(deliver)

        batches = get_bridge().feed(produce)

        def each_event() -> Iterator[Event]:
            for batch in batches:
                yield from batch.events()

        try:
            yield each_event()
        finally:
            batches.close()


class SSEUser(User):
    """A Locust user with `self.sse` (an SSEClient). Abstract: subclass it with tasks."""

    abstract = True

    def __init__(self, environment) -> None:
        super().__init__(environment)
        self.sse = SSEClient(self)


# ---------------------------------------------------------------------------- Locust hooks
# Registered at import (adding listeners starts nothing); each runs in Locust's gevent.

def _threshold(text: str) -> str:
    """Checked when the command line is read (a bad one stops Locust with one line); kept
    as text, since the master ships its options to the workers."""
    try:
        parse_threshold(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("--threshold", "--sse-threshold")) from None
    return text


@events.init_command_line_parser.add_listener
def _add_options(parser) -> None:
    parser.add_argument("--sse-json", metavar="FILE", default=None, include_in_web_ui=False,
                       help="write fanin's exact SSE report (merged over workers) as JSON to FILE")
    parser.add_argument("--sse-html", metavar="FILE", default=None, include_in_web_ui=False,
                       help="write that report as one self-contained HTML page (charts over time) to FILE")
    parser.add_argument("--sse-threshold", metavar="EXPR", action="append", default=[], type=_threshold,
                       include_in_web_ui=False,
                       help="fail the run (exit status 1) unless EXPR holds, e.g. 'p99_ttfe<500ms' (repeatable)")


@events.test_start.add_listener
def _on_test_start(environment, **_kw) -> None:
    _state.started = time.monotonic()
    _state.worker_snapshots.clear()


@events.spawning_complete.add_listener
def _on_spawned(user_count: int, **_kw) -> None:
    _state.peak_users = max(_state.peak_users, user_count)


@events.test_stop.add_listener
def _on_test_stop(environment, **_kw) -> None:
    _state.stopped = time.monotonic()
    _state.finish()


@events.report_to_master.add_listener
def _on_report_to_master(client_id: str, data: dict[str, Any]) -> None:
    if _state.snapshot:
        data[REPORT_KEY] = _state.snapshot


@events.worker_report.add_listener
def _on_worker_report(client_id: str, data: dict[str, Any]) -> None:
    snapshot = data.get(REPORT_KEY)
    if snapshot:
        _state.worker_snapshots[client_id] = snapshot  # cumulative: the latest replaces the last


@events.quitting.add_listener
def _on_quitting(environment, **_kw) -> None:
    _state.finish()  # a user that outlived test_stop (--stop-timeout) may have opened it again
    runner = environment.runner
    if runner is None or isinstance(runner, WorkerRunner):
        return
    if isinstance(runner, MasterRunner):
        snapshots = dict(_state.worker_snapshots)
    else:
        snapshots = {"local": _state.snapshot} if _state.snapshot else {}
    if not snapshots:
        return
    options = environment.parsed_options
    thresholds = [parse_threshold(text) for text in getattr(options, "sse_threshold", None) or []]
    elapsed = (_state.stopped or time.monotonic()) - _state.started if _state.started else 0.0
    users = _state.peak_users or getattr(options, "num_users", 0) or 0
    report = merged_report(snapshots, elapsed_s=elapsed, users=users, thresholds=thresholds)
    print_report(report)
    path = getattr(options, "sse_json", None)
    if path:
        with open(path, "wb") as fh:
            fh.write(orjson.dumps(report, default=_bytes_as_text, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    html_path = getattr(options, "sse_html", None)
    if html_path:
        from fanin.measure.html_report import write_html

        write_html(report, html_path)
    if any(not result["ok"] for result in report["thresholds"]):
        environment.process_exit_code = 1


def _bytes_as_text(value: Any) -> str:
    if isinstance(value, bytes):  # hdrh's encoded histograms are base64 text
        return value.decode("ascii")
    raise TypeError
