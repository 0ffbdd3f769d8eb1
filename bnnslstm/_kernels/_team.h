/* The kernels' thread team and clock: portable C11, pthreads on POSIX, Win32 threads on
 * _WIN32.
 *
 * A call that needs a team of n threads hands its work to team_run(), which runs
 * fn(arg, tid) for tid 0..n-1 on the calling thread (tid 0) and n-1 workers of a pool kept
 * from call to call; the threads meet at team_barrier() between the phases of a time step.
 * BLAS runs single-threaded inside the team (the caller limits it), so the two never
 * compete for cores.
 *
 * The pool (one per kernel extension: every definition here is static):
 * - workers are created the first time a team of that size is needed, then kept; between
 *   jobs they spin TEAM_SPINS rounds, yield their core for at most TEAM_IDLE_SECONDS, then
 *   sleep on a condition variable, so idle workers take no CPU from BLAS or from other
 *   processes;
 * - one job at a time: a call takes the pool's mutex for its whole run (blocking; the GIL
 *   is released), so concurrent calls each get their full team; a team of 1 never touches
 *   the pool;
 * - if the workers cannot be created the job runs alone, as a team of 1 (*team is set to 1
 *   before fn runs, since the barriers wait for every member);
 * - fork (POSIX): the prepare handler takes the pool's mutexes, so no fork happens in the
 *   middle of a job; the parent releases them; the child, whose workers do not exist,
 *   starts again from an empty pool and creates its workers at its first team call.
 */
#ifndef BNNSLSTM_TEAM_H
#define BNNSLSTM_TEAM_H

#include <stddef.h>
#include <time.h>

#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#else
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#endif

#define TEAM_MAX 256  /* threads a team may have (tids 0..TEAM_MAX-1) */

/* Rounds a waiting thread spins before it gives its core away (the barrier: yields; the
 * pool's workers and the caller waiting for them: sleep). On a machine other processes
 * load, a thread that spins long (libgomp's barrier spins ~300k rounds) takes the core from
 * the very thread everybody waits for. The defaults are measured (benchmarks/spin.py);
 * team_tuning() changes them, for that measurement. */
#define TEAM_SPINS 4000
static int team_spins = TEAM_SPINS;
/* Measured (benchmarks/spin.py, 2-core Zen 5, a stream frame of an I256 H256 layer, a
 * T150 B32 H256 forward, T10 B8 H256 forwards back to back and 1 ms apart, best of 5-7,
 * without and with another process keeping a core busy): from 250 to 4000 spins the four
 * agree within the noise (5 %) on a quiet machine; 16000 and 64000 cost 1.1-1.7x under
 * load (the spinning thread keeps a core from the one everybody waits for); 250 or 1000
 * spins without idle yielding cost a stream frame 1.7-1.9x (its worker sleeps between
 * frames). Yielding for 2 ms rather than 0.2 ms let calls 1 ms apart find their workers
 * awake (741 us against 809) and cost nothing measurable under load. */

/* ------------------------------------------------------------------------ atomics */
/* C11 <stdatomic.h> where the compiler has it; MSVC without /experimental:c11atomics gets
 * the Interlocked functions (full barriers, stronger than what is asked). Every atomic
 * here is a 32-bit int (Call.barrier is int[16]; LONG is 32 bits on Windows). */
#if !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
typedef atomic_int team_atomic;
#define team_load(p) atomic_load_explicit((p), memory_order_acquire)
#define team_store(p, v) atomic_store_explicit((p), (v), memory_order_release)
#define team_fetch_add(p, v) atomic_fetch_add_explicit((p), (v), memory_order_acq_rel)
#elif defined(_WIN32)
typedef volatile LONG team_atomic;
#define team_load(p) InterlockedCompareExchange((p), 0, 0)
#define team_store(p, v) ((void)InterlockedExchange((p), (v)))
#define team_fetch_add(p, v) InterlockedExchangeAdd((p), (v))
#else
#error "bnnslstm's thread team needs C11 atomics (<stdatomic.h>)"
#endif

#if defined(_MSC_VER) && !defined(__clang__)
#define TEAM_THREAD_LOCAL __declspec(thread)
#else
#define TEAM_THREAD_LOCAL _Thread_local
#endif

#if defined(_WIN32)
#define team_yield() SwitchToThread()
#else
#define team_yield() sched_yield()
#endif

/* The calling thread's place in the current team: 0 on every thread but the pool's
 * workers, each of which has its own tid for life (_blas.h's counters index by it). */
static TEAM_THREAD_LOCAL int team_tid = 0;
static inline int team_thread(void) { return team_tid; }

/* ------------------------------------------------------------------------ barrier */
/* The barrier between the phases of a step. Waiting threads spin for TEAM_SPINS rounds,
 * then yield their core until the last thread arrives. state: the call's own counters
 * (Call.barrier: arrivals at [0], the generation at [8], a cache line apart). */
static inline void team_barrier(int *state, int team)
{
    if (team <= 1)
        return;
    team_atomic *arrived = (team_atomic *)state, *generation = (team_atomic *)(state + 8);
    int seen = team_load(generation);
    if (team_fetch_add(arrived, 1) == team - 1) {
        team_store(arrived, 0);
        team_fetch_add(generation, 1);
        return;
    }
    for (int spins = 0; team_load(generation) == seen; spins++)
        if (spins >= team_spins)
            team_yield();
}

/* ------------------------------------------------------------------------ locks */
#if defined(_WIN32)
typedef SRWLOCK team_mutex;
typedef CONDITION_VARIABLE team_cond;
#define TEAM_MUTEX_INIT SRWLOCK_INIT
#define TEAM_COND_INIT CONDITION_VARIABLE_INIT
static inline void team_lock(team_mutex *m) { AcquireSRWLockExclusive(m); }
static inline void team_unlock(team_mutex *m) { ReleaseSRWLockExclusive(m); }
static inline void team_wait(team_cond *c, team_mutex *m) { SleepConditionVariableSRW(c, m, INFINITE, 0); }
static inline void team_wake_all(team_cond *c) { WakeAllConditionVariable(c); }
static inline void team_wake_one(team_cond *c) { WakeConditionVariable(c); }
#else
typedef pthread_mutex_t team_mutex;
typedef pthread_cond_t team_cond;
#define TEAM_MUTEX_INIT PTHREAD_MUTEX_INITIALIZER
#define TEAM_COND_INIT PTHREAD_COND_INITIALIZER
static inline void team_lock(team_mutex *m) { pthread_mutex_lock(m); }
static inline void team_unlock(team_mutex *m) { pthread_mutex_unlock(m); }
static inline void team_wait(team_cond *c, team_mutex *m) { pthread_cond_wait(c, m); }
static inline void team_wake_all(team_cond *c) { pthread_cond_broadcast(c); }
static inline void team_wake_one(team_cond *c) { pthread_cond_signal(c); }
#endif

/* ------------------------------------------------------------------------ the pool */
/* seconds on a monotonic-enough clock (C11 timespec_get), for _blas.h's counters */
static inline double team_clock(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A thread waiting for the pool (a worker for the next job, the caller for the workers)
 * spins TEAM_SPINS rounds, then yields its core for up to TEAM_IDLE_SECONDS, then sleeps:
 * back-to-back calls find their workers awake (waking a sleeping thread costs tens of
 * microseconds and may land it on the caller's core), and yielding leaves the core to
 * anything else that is runnable. Returns whether to keep waiting without sleeping. */
#define TEAM_IDLE_SECONDS 2e-3
static double team_idle_seconds = TEAM_IDLE_SECONDS;
static inline int team_keep_spinning(int *spins, double *since)
{
    if (++*spins < team_spins)
        return 1;
    double now = team_clock();
    if (*since == 0)
        *since = now;
    else if (now - *since > team_idle_seconds)
        return 0;
    team_yield();
    return 1;
}

typedef void (*team_job)(void *arg, int tid);

static struct {
    team_mutex job_lock;   /* held by the caller for a whole job: one job at a time */
    team_mutex lock;       /* guards the sleeping counts and the condition variables */
    team_cond wake;        /* workers sleep here until the next job */
    team_cond done;        /* the caller sleeps here until the workers finish */
    int workers;           /* workers created (tids 1..workers); under job_lock */
    int sleeping;          /* workers asleep on wake; under lock */
    int caller_sleeping;   /* the caller asleep on done; under lock */
    int refuse;            /* testing: pretend thread creation fails (team_refuse_threads) */
    int fork_handlers;     /* pthread_atfork registered (under job_lock) */
    team_job fn;           /* the current job, published by the generation's increment */
    void *arg;
    int team;
    int start[TEAM_MAX];   /* the generation each worker was created at (its first wait) */
    team_atomic generation;  /* +1 per job */
    team_atomic pending;     /* workers that have not yet finished the current job */
} team_pool = {TEAM_MUTEX_INIT, TEAM_MUTEX_INIT, TEAM_COND_INIT, TEAM_COND_INIT};

/* A worker: waits for each new generation, runs its share if its tid is in the job's team,
 * then counts itself done. Every worker counts itself, in the team or not: the next job is
 * published only once every worker has read this one. */
static void team_worker(int tid)
{
    team_tid = tid;
    int seen = team_pool.start[tid];  /* not the generation now: the job it was created for may be published already */
    for (;;) {
        int spins = 0, now;
        double since = 0;
        while ((now = team_load(&team_pool.generation)) == seen && team_keep_spinning(&spins, &since))
            ;
        if (now == seen) {
            team_lock(&team_pool.lock);
            while ((now = team_load(&team_pool.generation)) == seen) {
                team_pool.sleeping++;
                team_wait(&team_pool.wake, &team_pool.lock);
                team_pool.sleeping--;
            }
            team_unlock(&team_pool.lock);
        }
        seen = now;
        if (tid < team_pool.team)
            team_pool.fn(team_pool.arg, tid);
        if (team_fetch_add(&team_pool.pending, -1) == 1) {
            team_lock(&team_pool.lock);
            if (team_pool.caller_sleeping)
                team_wake_one(&team_pool.done);
            team_unlock(&team_pool.lock);
        }
    }
}

#if defined(_WIN32)
static DWORD WINAPI team_worker_main(LPVOID tid)
{
    team_worker((int)(size_t)tid);
    return 0;
}

static int team_spawn(int tid)
{
    HANDLE thread = CreateThread(NULL, 4u << 20, team_worker_main, (LPVOID)(size_t)tid,
                                 STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
    if (thread == NULL)
        return 0;
    CloseHandle(thread);
    return 1;
}
#else
static void *team_worker_main(void *tid)
{
    team_worker((int)(size_t)tid);
    return NULL;
}

/* A detached worker with the asynchronous signals blocked (they go to the process's own
 * threads, where Python handles them; the synchronous ones a fault raises stay unblocked,
 * so a crash in a worker still reaches faulthandler) and a stack of at least 4 MiB (macOS
 * gives secondary threads 512 KiB; BLAS may put buffers on the stack). */
static int team_spawn(int tid)
{
    pthread_attr_t attr;
    pthread_t thread;
    sigset_t all, old;
    size_t stack = 0;
    int ok;
    if (pthread_attr_init(&attr) != 0)
        return 0;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_attr_getstacksize(&attr, &stack) == 0 && stack < (4u << 20))
        pthread_attr_setstacksize(&attr, 4u << 20);
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGABRT);
    sigdelset(&all, SIGTRAP);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    ok = pthread_create(&thread, &attr, team_worker_main, (void *)(size_t)tid) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return ok;
}

static void team_before_fork(void)
{
    team_lock(&team_pool.job_lock);
    team_lock(&team_pool.lock);
}

static void team_after_fork_parent(void)
{
    team_unlock(&team_pool.lock);
    team_unlock(&team_pool.job_lock);
}

/* The child has only the forking thread: no worker, nobody asleep. Its mutexes were taken
 * by that thread before the fork; the condition variables may record waiters that do not
 * exist here, so they start anew. */
static void team_after_fork_child(void)
{
    pthread_cond_init(&team_pool.wake, NULL);
    pthread_cond_init(&team_pool.done, NULL);
    team_pool.workers = 0;
    team_pool.sleeping = 0;
    team_pool.caller_sleeping = 0;
    team_store(&team_pool.pending, 0);
    team_unlock(&team_pool.lock);
    team_unlock(&team_pool.job_lock);
}
#endif

/* Runs fn(arg, tid) for tid 0..*team-1, the caller being tid 0, and returns when every
 * one has returned. When the workers cannot be created, sets *team to 1 and runs fn(arg, 0)
 * alone. */
static void team_run(team_job fn, void *arg, int *team)
{
    int n = *team;
    if (n > TEAM_MAX)
        n = *team = TEAM_MAX;
    if (n <= 1) {
        fn(arg, 0);
        return;
    }
    team_lock(&team_pool.job_lock);
#if !defined(_WIN32)
    if (!team_pool.fork_handlers)
        team_pool.fork_handlers = pthread_atfork(team_before_fork, team_after_fork_parent,
                                                 team_after_fork_child) == 0;
#endif
    while (team_pool.workers < n - 1 && !team_pool.refuse) {
        team_pool.start[team_pool.workers + 1] = team_load(&team_pool.generation);
        if (!team_spawn(team_pool.workers + 1))
            break;
        team_pool.workers++;
    }
    if (team_pool.workers < n - 1) {
        team_unlock(&team_pool.job_lock);
        *team = 1;
        fn(arg, 0);
        return;
    }
    team_pool.fn = fn;
    team_pool.arg = arg;
    team_pool.team = n;
    team_store(&team_pool.pending, team_pool.workers);
    team_fetch_add(&team_pool.generation, 1);
    team_lock(&team_pool.lock);
    if (team_pool.sleeping)
        team_wake_all(&team_pool.wake);
    team_unlock(&team_pool.lock);

    fn(arg, 0);

    int spins = 0;
    double since = 0;
    while (team_load(&team_pool.pending) != 0 && team_keep_spinning(&spins, &since))
        ;
    if (team_load(&team_pool.pending) != 0) {
        team_lock(&team_pool.lock);
        while (team_load(&team_pool.pending) != 0) {
            team_pool.caller_sleeping = 1;
            team_wait(&team_pool.done, &team_pool.lock);
        }
        team_pool.caller_sleeping = 0;
        team_unlock(&team_pool.lock);
    }
    team_unlock(&team_pool.job_lock);
}

/* How long waiting threads spin (rounds) and then yield (seconds) before they sleep: sets
 * them when spins >= 0, returns the spins in use (the idle seconds through *idle). */
static inline int team_tuning(int spins, double *idle)
{
    if (spins >= 0) {
        team_spins = spins;
        team_idle_seconds = *idle;
    }
    *idle = team_idle_seconds;
    return team_spins;
}

/* The pool's workers (0 before the first team call, and in a child after fork). */
static inline int team_workers(void) { return team_pool.workers; }

/* Testing: while set, the pool creates no worker, as if the system refused (calls then
 * run as teams of 1 unless the workers already exist). */
static inline void team_refuse_threads(int refuse) { team_pool.refuse = refuse; }

#endif
