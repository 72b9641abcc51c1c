"""The built-in SSE server: generic streams with fault injection (`generic`), the Dify-like
app API (`dify`), assembled in `app`; `fanin serve` in `command`."""
