"""Dify plugin entry point (`python -m main`). The SDK reads INSTALL_METHOD and friends from
the environment or `.env`; importing dify_plugin patches the process with gevent, which is
why the engine runs behind fanin.embed.bridge."""

from dify_plugin import DifyPluginEnv, Plugin

plugin = Plugin(DifyPluginEnv(MAX_REQUEST_TIMEOUT=600))

if __name__ == "__main__":
    plugin.run()
