/* The kernels' thread team and clock: portable C11.
 *
 * One OpenMP parallel region per call runs the whole call; its threads meet at
 * team_barrier() between the phases of a time step. BLAS runs single-threaded inside the
 * team (the caller limits it), so the two never compete for cores. Without OpenMP the
 * team is one thread and the barrier does nothing.
 */
#ifndef BNNSLSTM_TEAM_H
#define BNNSLSTM_TEAM_H

#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#define TEAM_OPENMP 1
static inline void team_barrier(void)
{
    _Pragma("omp barrier")
}
static inline int team_thread(void) { return omp_get_thread_num(); }
#else
#define TEAM_OPENMP 0
static inline void team_barrier(void) {}
static inline int team_thread(void) { return 0; }
#endif

/* Time spent inside BLAS and the floating-point operations handed to it, per team thread
 * (slot 8*thread: a cache line each), counted only while team_blas_timing is set
 * (benchmarks/run.py reports BLAS's share of the wall time with them). */
#define TEAM_MAX 256
static int team_blas_timing = 0;
static double team_blas_seconds[8 * TEAM_MAX];
static double team_blas_flops[8 * TEAM_MAX];

/* Products with at most this many rows or columns (a small batch) run as one gemv per
 * row or column: BLAS's gemm repacks the weights on every call, gemv streams them once
 * per sample, measured faster up to 4 samples (slower from 8). */
static int team_gemv_up_to = 4;

/* seconds on a monotonic-enough clock (C11 timespec_get), for the BLAS-time counters */
static inline double team_clock(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
