# The team driver: the planner's schedule as the threads read it (which arrangement a
# step runs, each step's wall time), the entry point the plan calls (run: the team of
# _team.h running one call, forward_thread or backward_thread on every member), and the
# Python side of a build (the entry point's address, the pool, the BLAS counters).
# Included by _lstm.pxi.


cdef inline const Arrangement* arrangement_of(const Call *c, int l, int s) noexcept nogil:
    """The arrangement step s of layer l runs (the planner's schedule)."""
    return &c.arrangement[0 if c.pick == NULL else c.pick[l * c.T + s]]


cdef inline void time_step(Call *c, int tid, Py_ssize_t index, double *since) noexcept nogil:
    """Thread 0 records the wall time from *since to now (just past a barrier) at
    step_seconds[index] while the planner times the call."""
    cdef double now
    if tid == 0 and c.step_seconds != NULL:
        now = team_clock()
        if index >= 0:
            c.step_seconds[index] = now - since[0]
        since[0] = now


cdef struct Job:
    Call *c
    bint forward


cdef void run(Call *c, bint forward) noexcept nogil:
    """The entry point: every layer of the forward (or the backward, from the regions of a
    forward) on a team of c.team threads, the caller and c.team - 1 workers of the pool
    (_team.h), each on its share (member). When the workers cannot be created the pool sets
    c.team to 1 and the caller runs the whole call alone, as a team of one, since the
    barriers wait for every member. The plan has checked everything."""
    cdef Job job
    job.c = c
    job.forward = forward
    team_run(member, &job, &c.team)


cdef void member(void *job, int tid) noexcept nogil:
    """Team member tid's walk through the pass, in the call's element type."""
    cdef Call *c = (<Job*>job).c
    if (<Job*>job).forward:
        if c.itemsize == 4:
            forward_thread(<float*>NULL, c, tid)
        else:
            forward_thread(<double*>NULL, c, tid)
    elif c.itemsize == 4:
        backward_thread(<float*>NULL, c, tid)
    else:
        backward_thread(<double*>NULL, c, tid)


# ---------------------------------------------------------------------------------- Python side
def entry_point():
    """The address of run(), for the plan (which picks this build or another one of the
    same source at import)."""
    return <size_t>&run


def team_available():
    """How many threads a team may have (the pool's limit: the same on every build)."""
    return TEAM_MAX


def team_pool(refuse_threads=None):
    """The number of workers this build's pool has created (0 before its first team call,
    and in a process forked since). Testing: ``refuse_threads=True`` makes the pool act as
    if thread creation failed (calls needing new workers then run on one thread), False
    restores it."""
    if refuse_threads is not None:
        team_refuse_threads(bool(refuse_threads))
    return team_workers()


def team_waits(int spins=-1, double idle_seconds=0):
    """(spins, idle_seconds): how many rounds a thread of this build's team spins while it
    waits (at a barrier, or a worker for the next call) before it yields its core, and how
    long it then yields before it sleeps; ``spins >= 0`` sets both first (for the
    measurement of benchmarks/spin.py)."""
    cdef double idle = idle_seconds
    cdef int now = team_tuning(spins, &idle)
    return now, idle


def blas_time(bint enable=False, bint reset=False):
    """[(seconds inside BLAS, floating-point operations handed to BLAS)] per team thread that
    called it since the last reset (counted only while enabled: benchmarks/run.py reports
    BLAS's share of the wall time, and that every GEMM FLOP of a call went through BLAS)."""
    cdef int i, at
    out = [(blas_seconds[BLAS_COUNTER_SPACING * i], blas_flops[BLAS_COUNTER_SPACING * i])
           for i in range(TEAM_MAX) if blas_seconds[BLAS_COUNTER_SPACING * i] != 0]
    if reset:
        for i in range(TEAM_MAX):
            at = BLAS_COUNTER_SPACING * i
            blas_seconds[at] = 0
            blas_flops[at] = 0
    blas_counting(enable)
    return out
