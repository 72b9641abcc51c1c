"""Dify plugin entry point (`python -m main`). The SDK reads INSTALL_METHOD and friends from
the environment or `.env`; importing dify_plugin patches the process with gevent, which is
why the engine runs behind fanin.embed.bridge. The plugin serves many tool calls in one
process, so it switches the process-wide byte budget on here, explicitly."""

from dify_plugin import DifyPluginEnv, Plugin

from tools.common import use_process_budget

use_process_budget()  # one bound on what all streams of this plugin process buffer together
plugin = Plugin(DifyPluginEnv(MAX_REQUEST_TIMEOUT=600))

if __name__ == "__main__":
    plugin.run()
