"""Imported first by every forkserver nnconform starts (its preload list): the forkserver then
dies as soon as the process that started it does (``isolation.die_with``), instead of finalising
a torch-laden interpreter for seconds after its last client is gone."""

import os

from conformance.isolation import die_with

die_with(os.getppid())
