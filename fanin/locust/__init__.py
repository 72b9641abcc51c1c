"""SSE load tests on Locust (`pip install sse-fanin[locust]`): `from fanin.locust import SSEUser`.

`user` holds SSEUser and its Locust hooks; `recorder` what runs on the engine's loop thread
(HDR histograms per stats entry); `report` the folding into Locust's stats and fanin's exact
merged report. This is the one subpackage whose `__init__` imports: the locustfile contract
is `from fanin.locust import SSEUser`, and importing it registers the command-line options
(`--sse-json`, `--sse-threshold`) with Locust."""

from fanin.locust.user import SSEUser

__all__ = ["SSEUser"]
