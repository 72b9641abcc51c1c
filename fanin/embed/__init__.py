"""Running the engine inside someone else's process: `bridge` (sync and gevent code, as in
Dify's plugin runtime and Locust, drive the engine on its own asyncio thread) and `netguard`
(the destination policy for tools that fetch user-supplied URLs)."""
