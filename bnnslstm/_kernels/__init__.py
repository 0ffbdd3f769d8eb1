"""Compiled kernels (Cython + C). Private: the Python layer validates before calling them.

float32 products all run on the packed kernel of ``packed_gemm.h`` under OpenMP, so one
thread team serves a whole call. (An earlier version mixed OpenBLAS's threads with the
OpenMP time loop; each runtime's idle threads then spun on the cores the other needed.)
"""
