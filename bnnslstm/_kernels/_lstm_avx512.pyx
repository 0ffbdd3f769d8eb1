"""The kernels of _lstm.pyx, compiled for CPUs with AVX-512 (F, DQ, BW, VL), AVX2 and FMA
(x86-64 only).

Compiler multi-versioning of the same source: the plan imports this build only when numpy
reports AVX512F, AVX512DQ, AVX512BW, AVX512VL, AVX2 and FMA for the CPU;
everything but the instruction selection of the elementwise loops is identical to the
portable and AVX2 builds.
"""

include "_lstm.pxi"
