"""`fanin load`: load tests of SSE servers. `command` (the only reader of argparse) builds
one frozen `options.LoadOptions`; `streams_command` / `request_command` make the plans;
`pool` runs them here or in worker processes; `finish` judges the `result.RunResult` and
writes the report. What Locust shares (HDR metrics, the observer, the report, delivery
accounting, the HTML page) lives in `fanin.measure`."""
