"""Imported in the loader workers' fork server only (workers.PRELOADED), never elsewhere: the server
ignores SIGTERM, as its workers do.

A scheduler stops a job by sending SIGTERM to every process in it. A fork server that died of it
would make every worker look dead to the training process (their exit status comes through the
server), and the job's orderly stop would end as "DataLoader worker exited unexpectedly". The
server still ends with the training process: its control socket closes.
"""

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
