"""Parameter parsing for the Dify tools (tools/params.py): no Dify import, in-process."""

from __future__ import annotations

import pytest

from tools import params as P


def test_urls_one_per_line_or_comma_separated_keep_commas_inside_queries():
    assert P.split_urls("http://a/x\n\n https://b/y \n") == ["http://a/x", "https://b/y"]
    assert P.split_urls("http://a/x, https://b/y,http://c/z") == ["http://a/x", "https://b/y", "http://c/z"]
    assert P.split_urls("http://a/s?fields=a,b,c") == ["http://a/s?fields=a,b,c"]
    assert P.split_urls(["http://a", "http://b"]) == ["http://a", "http://b"]
    with pytest.raises(ValueError, match="url"):
        P.split_urls("  \n ")


def test_headers_as_lines_or_json():
    assert P.parse_pairs("X-A: 1\nX-B:two: parts\n# comment\n", "headers") == [("X-A", "1"), ("X-B", "two: parts")]
    assert P.parse_pairs('{"X-A": 1, "X-B": true, "X-C": null}', "headers") == [
        ("X-A", "1"), ("X-B", "true"), ("X-C", "")]
    assert P.parse_pairs("", "headers") == []
    with pytest.raises(ValueError, match="headers: line 1 is not 'Key: value'"):
        P.parse_pairs("no separator here", "headers")
    with pytest.raises(ValueError, match="headers: not valid JSON"):
        P.parse_pairs('{"X-A": ', "headers")


def test_query_params_accept_equals_and_colons():
    assert P.parse_pairs("stream=true\nmodel: gpt\nq=a:b", "query_params", allow_equals=True) == [
        ("stream", "true"), ("model", "gpt"), ("q", "a:b")]


def test_body_json_or_raw():
    assert P.parse_body('{"a": [1, "中文"]}') == ({"a": [1, "中文"]}, None)
    assert P.parse_body("[1,2]") == ([1, 2], None)
    json_body, raw = P.parse_body("plain text ✅")
    assert json_body is P.MISSING_BODY and raw == "plain text ✅"
    assert P.parse_body("")[0] is P.MISSING_BODY
    with pytest.raises(ValueError, match="body: looks like JSON"):
        P.parse_body('{"a": ')


def test_numbers_defaults_caps_and_errors():
    assert P.number({}, "timeout", 30.0) == 30.0
    assert P.number({"timeout": None}, "timeout", 30.0) == 30.0
    assert P.number({"timeout": "2.5"}, "timeout", 30.0) == 2.5
    assert P.number({"max_duration": 9999}, "max_duration", 300.0, maximum=590) == 590
    assert P.number({"idle_timeout": 0}, "idle_timeout", None, zero_means_none=True) is None
    with pytest.raises(ValueError, match="timeout: must be greater than 0"):
        P.number({"timeout": -1}, "timeout", 30.0)
    with pytest.raises(ValueError, match="timeout: must be a number"):
        P.number({"timeout": "soon"}, "timeout", 30.0)
    assert P.whole_number({"max_events": 5.0}, "max_events", 100, minimum=1) == 5
    with pytest.raises(ValueError, match="whole number"):
        P.whole_number({"max_events": 2.5}, "max_events", 100)
    with pytest.raises(ValueError, match="at least 1"):
        P.whole_number({"max_events": 0}, "max_events", 100, minimum=1)


def test_choice_and_json_object():
    assert P.choice({"reconnect": "ALWAYS"}, "reconnect", ("error", "always", "never"), "error") == "always"
    assert P.choice({}, "reconnect", ("error", "always"), "error") == "error"
    with pytest.raises(ValueError, match="reconnect: choose one of error, always"):
        P.choice({"reconnect": "sometimes"}, "reconnect", ("error", "always"), "error")
    assert P.parse_json_object('{"语言": "中文"}', "inputs") == {"语言": "中文"}
    with pytest.raises(ValueError, match="inputs: must be a JSON object"):
        P.parse_json_object("[1]", "inputs")
