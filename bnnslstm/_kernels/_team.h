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
static inline int team_thread(void) { return omp_get_thread_num(); }
static inline int team_started(void) { return omp_get_num_threads(); }
#else
#define TEAM_OPENMP 0
static inline int team_thread(void) { return 0; }
static inline int team_started(void) { return 1; }
#endif

/* The barrier between the phases of a step. Waiting threads spin for TEAM_SPINS rounds,
 * then give their core away until the last thread arrives: on a machine other processes
 * load, a thread that spins (libgomp's barrier spins ~300k rounds) takes the core from
 * the very thread everybody waits for. state: the call's own counters (Call.barrier:
 * arrivals at [0], the generation at [8], a cache line apart). */
#define TEAM_SPINS 4000

#if TEAM_OPENMP && !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
#if defined(_WIN32)
#include <windows.h>
#define team_yield() SwitchToThread()
#else
#include <sched.h>
#define team_yield() sched_yield()
#endif
static inline void team_barrier(int *state, int team)
{
    if (team <= 1)
        return;
    atomic_int *arrived = (atomic_int *)state, *generation = (atomic_int *)(state + 8);
    int seen = atomic_load_explicit(generation, memory_order_acquire);
    if (atomic_fetch_add_explicit(arrived, 1, memory_order_acq_rel) == team - 1) {
        atomic_store_explicit(arrived, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(generation, 1, memory_order_release);
        return;
    }
    for (int spins = 0; atomic_load_explicit(generation, memory_order_acquire) == seen; spins++)
        if (spins >= TEAM_SPINS)
            team_yield();
}
#elif TEAM_OPENMP
static inline void team_barrier(int *state, int team)
{
    (void)state;
    if (team > 1)
        _Pragma("omp barrier")
}
#else
static inline void team_barrier(int *state, int team) { (void)state; (void)team; }
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
#define TEAM_GEMV_UP_TO 4

/* seconds on a monotonic-enough clock (C11 timespec_get), for the BLAS-time counters */
static inline double team_clock(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
