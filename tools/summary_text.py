"""The summary sentence of `sse_request` in the language the workflow builder chose.

Dify does not tell a tool its user's language: in dify_plugin 0.10.2 the invoke request
carries the user id, the parameters and the credentials, but no locale (ToolInvokeRequest,
ToolRuntime, Session). So the tool has a `language` parameter (en_US, zh_Hans, ja_JP,
pt_BR: the languages of its labels); English is the engine's own sentence."""

from __future__ import annotations

from fanin.events import Summary

__all__ = ["LANGUAGES", "summary_sentence"]

LANGUAGES = ("en_US", "zh_Hans", "ja_JP", "pt_BR")

_STATUS = {
    "zh_Hans": {"completed": "完成", "partial": "部分完成", "failed": "失败"},
    "ja_JP": {"completed": "完了", "partial": "一部完了", "failed": "失敗"},
    "pt_BR": {"completed": "concluído", "partial": "parcial", "failed": "falhou"},
}
_STOPPED = {
    "zh_Hans": {"max_events": "达到最大事件数", "max_duration": "达到最长持续时间", "stop_on": "遇到停止标记",
                "interrupt": "被中断"},
    "ja_JP": {"max_events": "最大イベント数に達した", "max_duration": "最大継続時間に達した", "stop_on": "停止マーカーを受信した",
              "interrupt": "中断された"},
    "pt_BR": {"max_events": "máximo de eventos", "max_duration": "duração máxima", "stop_on": "marcador de parada",
              "interrupt": "interrupção"},
}


def summary_sentence(summary: Summary, language: str) -> str:
    if language not in _STATUS:
        return summary.text
    status = _STATUS[language].get(summary.status, summary.status)
    sources = len(summary.sources)
    failed = sum(1 for s in summary.sources if s.status == "failed")
    stopped = _STOPPED[language].get(summary.stopped_by or "", summary.stopped_by or "")
    events, seconds = summary.total_events, f"{summary.connection_duration:.1f}"
    if language == "zh_Hans":
        text = f"SSE {status}：从 {sources} 个源接收到 {events} 个事件，耗时 {seconds} 秒"
        text += f"，{failed} 个源失败" if failed else ""
        return text + (f"，因{stopped}而停止" if stopped else "")
    if language == "ja_JP":
        text = f"SSE {status}：{sources} 個のソースから {events} 件のイベントを受信、{seconds} 秒"
        text += f"、{failed} 個のソースが失敗" if failed else ""
        return text + (f"、{stopped}ため停止" if stopped else "")
    text = f"SSE {status}: {events} evento{'s' if events != 1 else ''} de {sources} fonte{'s' if sources != 1 else ''}" \
           f" em {seconds} s"
    text += f", {failed} falhou" if failed == 1 else (f", {failed} falharam" if failed else "")
    return text + (f", parado por {stopped}" if stopped else "")
