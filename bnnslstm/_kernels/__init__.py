"""Compiled kernels (Cython + C). Private: the Python layer validates before calling them.

The small-batch recurrent products run OpenMP teams for a few microseconds per time step.
With libgomp's default (active) wait policy the idle team then spins, stealing the cores
that BLAS and the Python layer need next (measured: batch-1 forward 6 ms -> 16 ms). So
unless the user chose otherwise, threads wait passively.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
