"""`python -m boneage.train`. A package's `__main__`, not a module run as a script: processes
started by spawn or a fork server (loader workers) import a script's module again as their
`__main__`, which would start the command again in each of them; they skip a package's `__main__`.
"""

from boneage.train.command import main

main()
