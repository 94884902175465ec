"""`python -m boneage.train`. A package's `__main__`, not a module run as a script: processes
started by spawn or a fork server (loader workers) import a script's module again as their
`__main__`, and the command imports Lightning and timm (seconds per worker); they skip a
package's `__main__`.

The loader workers' fork server starts before those imports, on another core, so that it is
ready when the first batch is asked for (the default loaders have workers).
"""

from boneage.datamodules.workers import start_fork_server

start_fork_server()

from boneage.train.command import main  # noqa: E402  (after the server's start, on purpose)

main()
