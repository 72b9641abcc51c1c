"""`fanin load`'s typed spine (issue 16, item 2): one frozen, picklable LoadOptions, built
once from the command line with None for what was not given, checked once; the plans of
either mode are built from it, and the Namespace never leaves the command module."""

from __future__ import annotations

import ast
import dataclasses
import pickle
from pathlib import Path

import pytest

from fanin.cli.main import build_parser
from fanin.errors import UsageError
from fanin.load.command import options_from_args
from fanin.load.options import LoadOptions

LOAD = Path(__file__).resolve().parent.parent / "fanin" / "load"


def options(*argv: str) -> LoadOptions:
    return options_from_args(build_parser("load").parse_args(["load", "http://127.0.0.1:9/x", *argv]))


def test_not_given_is_none_and_defaults_apply_in_one_place():
    o = options()
    assert (o.retries, o.reconnect, o.warmup, o.ramp_up, o.workers, o.duration) == (None,) * 6
    assert o.run_duration == 10.0 and o.users == 10 and o.warmup_s == 0.0 and o.process_count == 1
    config = o.stream_config()
    assert (config.retries, config.reconnect, config.connect_timeout) == (3, "error", 30.0)
    # given with its default value is still given: request mode refuses it
    with pytest.raises(UsageError, match="--retries and --reconnect are for --mode streams"):
        options("--mode", "requests", "--retries", "3")
    with pytest.raises(UsageError, match="--rate is for --mode streams"):
        options("--mode", "requests", "--rate", "5")
    assert options("--mode", "requests", "--ramp-up", "0s").ramp_up == 0.0  # request mode ramps too


def test_the_stream_client_is_lean_unless_asked_and_only_in_streams_mode():
    assert options().client_kind == "lean" and options("--http-client", "aiohttp").client_kind == "aiohttp"
    from fanin.load.streams_command import stream_plans

    assert {p.http_client for p in stream_plans(options("--http-client", "aiohttp", "-c", "4", "--workers", "2"))} \
        == {"aiohttp"}
    with pytest.raises(UsageError, match="--http-client is for --mode streams"):
        options("--mode", "requests", "--http-client", "lean")


def test_options_of_the_other_mode_are_refused_not_ignored():
    with pytest.raises(UsageError, match=r"^--seed needs --mode requests$"):
        options("--seed", "1")
    with pytest.raises(UsageError, match=r"^--arrival, --grace need --mode requests$"):
        options("--arrival", "poisson", "--grace", "1s")


def test_frozen_picklable_and_parsed_once():
    o = options("--mode", "requests", "-d", "2s", "--warmup", "500ms", "--slo", "ttft<1s",
                "--threshold", "p99_ttft<2s", "--json-body", "{}")
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.duration = 3.0  # type: ignore[misc]
    copy = pickle.loads(pickle.dumps(o))
    assert copy == o and copy.warmup == 0.5 and copy.slos[0].limit_us == 1e6
    assert o.method == "POST"  # a body without -X
    assert o.stream_config() is o.stream_config()  # built and checked once


def test_both_modes_plans_come_from_the_options():
    from fanin.load.request_command import request_plans
    from fanin.load.streams_command import stream_plans

    plans = stream_plans(options("-c", "5", "--workers", "2", "--ramp-up", "1s"))
    assert [p.slots for p in plans] == [[0, 2, 4], [1, 3]]
    assert plans[0].start_offsets == [0.0, 0.4, 0.8]
    parts = request_plans(options("--mode", "requests", "-c", "3", "--workers", "2", "-n", "5"), 3, None)
    assert [(p.users, p.limit) for p in parts] == [(2, 3), (1, 2)]
    assert all(p.config.retries == 0 and p.config.reconnect == "never" for p in parts)


def test_the_namespace_ends_in_the_command_module():
    for path in LOAD.glob("*.py"):
        if path.name == "command.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                 and n.value.id == "args"}
        assert not names, f"{path.name} reads args.{sorted(names)}"
        assert "Namespace" not in path.read_text(encoding="utf-8").replace("argparse Namespace ends", ""), path.name
