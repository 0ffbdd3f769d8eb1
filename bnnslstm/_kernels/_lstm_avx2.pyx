"""The kernels of _lstm.pyx, compiled for CPUs with AVX2 and FMA (x86-64 only).

Compiler multi-versioning of the same source: the plan imports this build instead of the
portable one only when numpy reports AVX2 and FMA for the CPU; everything but
the instruction selection of the elementwise loops is identical.
"""

include "_lstm.pxi"
