"""`fanin load`: load tests of SSE servers. `command` (options, orchestration, workers),
`runner` (one process's streams), `metrics` (HDR histograms, mergeable), `report` (tables,
JSON, thresholds)."""
