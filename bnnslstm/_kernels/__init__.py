"""Compiled kernels (Cython + C). Private: the Python layer validates before calling them.

Every matrix product is a call of scipy's BLAS (``_blas.pxd``), single-threaded inside a
call; a call's thread team is the pool of ``_team.h`` (pthreads or Win32 threads). (An
earlier version mixed OpenBLAS's threads with an OpenMP time loop; each runtime's idle
threads then spun on the cores the other needed.)
"""
