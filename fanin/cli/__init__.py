"""The `fanin` command: `main` dispatches to each face's command; `options` holds the request
options that `fanin stream` and `fanin load` share; `writers` the output formats; `runloop`
runs the top coroutine."""
