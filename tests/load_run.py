"""Run `fanin load` in-process for a test: its exit status, its JSON report, its output."""

from __future__ import annotations

import json

from fanin.cli.main import main as fanin_main


def run_load(argv: list[str], tmp_path, capsys, *, mode: str | None = None) -> tuple[int, dict, str]:
    """(exit status, JSON report or {} when none was written, stderr + stdout)."""
    report_path = tmp_path / "report.json"
    head = ["load", "--mode", mode] if mode else ["load"]
    code = fanin_main([*head, *argv, "--no-progress", "--json", str(report_path)])
    captured = capsys.readouterr()
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return code, report, captured.err + captured.out
