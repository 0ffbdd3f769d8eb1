# The kernels' source, compiled three times (_lstm.pyx portable, _lstm_avx2.pyx,
# _lstm_avx512.pyx): the declarations every tier shares, then the tiers, each in its file:
#
#   _rows.pxi      where rows lie: a thread's share, time order, one accessor per region
#   _cell.pxi      the cell maths, forward and backward, on one sample's units
#   _input.pxi     a layer's input: x gathered, the layer below masked by dropout
#   _forward.pxi   projection, per-step products and cell pass, final states
#   _backward.pxi  per-step gradients and products, then the weight gradients
#   _driver.pxi    the planner's schedule, the thread team, the entry points


from cython cimport floating
from libc.math cimport NAN
from libc.stdint cimport uint64_t
from libc.string cimport memset

from ._activations cimport activate, slope
from ._blas cimport Mat, addressable, block, gemm, gemm_as, mat, transposed
from ._call cimport (FORM_INTO_PROJECTION, FORM_STATE_COPY, REGION_ACT_H_C, REGION_CELLS,
                     REGION_GATES, REGION_MASK, REGION_OUTPUT, REGION_PREACT, SCRATCH_CARRY,
                     SCRATCH_DG, SCRATCH_DX, SCRATCH_GRAD, SCRATCH_HT, SCRATCH_IN, SCRATCH_PREV,
                     SCRATCH_S, SCRATCH_X, SPLIT_DIRECTIONS, SPLIT_ROWS, SPLIT_SAMPLES,
                     Arrangement, Call, Direction, Gate, Layer, Seq, Vec)
from ._dropout cimport layer_key, sample_key, unit_scale

cdef extern from "_team.h" nogil:
    ctypedef void (*team_job)(void *arg, int tid) noexcept nogil
    void team_run(team_job fn, void *arg, int *team)
    void team_barrier(int *state, int team)
    double team_clock()
    int team_workers()
    void team_refuse_threads(int refuse)
    int team_tuning(int spins, double *idle)
    int blas_timing "team_blas_timing"
    double blas_seconds "team_blas_seconds"[]
    double blas_flops "team_blas_flops"[]
    int TEAM_MAX

cdef enum:
    CHUNK = 128     # hidden units per elementwise chunk (the chunk's arrays stay in L1;
                    # the loops stepping by it write the literal: range() needs one)
    GRAIN = 16      # GEMM slices start on multiples of this many rows/columns


include "_rows.pxi"
include "_cell.pxi"
include "_input.pxi"
include "_forward.pxi"
include "_backward.pxi"
include "_driver.pxi"
