"""Imported first by every forkserver nnconform starts (its preload list): the forkserver then
dies as soon as the process that started it does (``isolation.die_with``), instead of finalising
a torch-laden interpreter for seconds after its last client is gone. It ignores SIGTERM: sent to
the whole process group (``timeout``, CI runners), it would leave the run unable to start a job or
worker while its parent stops cleanly; the processes it forks restore it (``die_with``)."""

import os
import signal

from conformance.isolation import die_with

die_with(os.getppid())
signal.signal(signal.SIGTERM, signal.SIG_IGN)
