/* The BLAS wrapper's (_blas.pxd) counters and its gemv threshold, beside it. Every
 * definition is static: each extension that includes this header (each kernel build, and
 * _blas_check) has counters of its own. */
#ifndef BNNSLSTM_BLAS_H
#define BNNSLSTM_BLAS_H

#include "_team.h"  /* TEAM_MAX: the counters are per team thread */

/* Time spent inside BLAS and the floating-point operations handed to it, per team thread
 * (at BLAS_COUNTER_SPACING * tid: a cache line each), counted only while blas_timing is set
 * (benchmarks/run.py reports BLAS's share of the wall time with them). */
#define BLAS_COUNTER_SPACING 8
static int blas_timing = 0;
static double blas_seconds[BLAS_COUNTER_SPACING * TEAM_MAX];
static double blas_flops[BLAS_COUNTER_SPACING * TEAM_MAX];

/* Products with at most this many rows or columns (a small batch) run as one gemv per
 * row or column: BLAS's gemm repacks the weights on every call, gemv streams them once
 * per sample, measured faster up to 4 samples (slower from 8). */
#define BLAS_GEMV_UP_TO 4

#endif
