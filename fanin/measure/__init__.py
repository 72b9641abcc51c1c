"""What the load faces share (`fanin load`, fanin.locust): HDR metrics, the per-stream
observer, the report and its thresholds. A layer below the faces, so no face imports another."""
