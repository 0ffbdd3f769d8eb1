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
from ._blas cimport (BLAS_COUNTER_SPACING, Mat, addressable, blas_counting, blas_flops,
                     blas_seconds, block, gemm, gemm_as, mat, transposed)
from ._call cimport (FORM_INTO_PROJECTION, FORM_SAMPLE_MAJOR, FORM_SPLIT_SUMS, FORM_STATE_COPY,
                     REGION_ACT_H_C, REGION_CELLS, REGION_GATES, REGION_MASK, REGION_OUTPUT,
                     REGION_PREACT, SCRATCH_CARRY, SCRATCH_DG, SCRATCH_DX, SCRATCH_GRAD, SCRATCH_HT,
                     SCRATCH_IN, SCRATCH_PREV, SCRATCH_S, SCRATCH_X, SPLIT_DIRECTIONS, SPLIT_ROWS,
                     SPLIT_ROWS_SAMPLES, SPLIT_SAMPLES, SPLIT_UNITS, Arrangement, Call,
                     Direction, Gate, Layer, Seq, Vec)
from ._dropout cimport layer_key, sample_key, unit_scale
from ._team cimport (TEAM_MAX, team_barrier, team_clock, team_refuse_threads, team_run,
                     team_tuning, team_workers)

# The element type, written once for all: the kernels serve float and double through
# Cython's fused type ``floating``, and Cython specialises a function per type only through
# an argument of that type. The Call is untyped (char pointers; Mat, Seq and Vec count
# strides in elements: one struct, built by the plan for either type), so every kernel
# function takes a first argument ``floating *typ`` that is never read (NULL): its type
# picks the specialisation. member() (_driver.pxi) starts forward_thread(<float*>NULL, ...)
# or (<double*>NULL, ...) by Call.itemsize, and each function hands its typ on. For the
# same reason the Mat helpers of _blas.pxd (block()) take the item size in bytes: in a
# kernel that is sizeof(floating), a constant of the specialisation.

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
