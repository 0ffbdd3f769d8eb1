# The kernels' thread team (_team.h: the pool, its barrier, its clock), declared once for
# every module that cimports it. _team.h's definitions are static: each extension that
# includes it (each kernel build) has a pool of its own.

cdef extern from "_team.h" nogil:
    const int TEAM_MAX                  # threads a team may have
    ctypedef void (*team_job)(void *arg, int tid) noexcept nogil
    void team_run(team_job fn, void *arg, int *team)   # fn(arg, tid) on every member
    void team_barrier(int *state, int team)
    double team_clock()                 # seconds
    int team_thread()                   # the calling thread's tid in its team
    int team_workers()                  # workers the pool has created
    void team_refuse_threads(int refuse)
    int team_tuning(int spins, double *idle)
