# The C-level description of one LSTM call (forward and backward, docs/contract.rst), filled
# by bnnslstm/_plan.pyx after every check has passed and run by the kernels (_lstm.pxi, built
# as _lstm, _lstm_avx2 and _lstm_avx512).
#
# Rows: every (step t, sample b) pair is one row of the layer-wide arrays, time-major.
#   cache rows (the training cache's regions, REGIONS in _workspace.pxi): t*B + b, padded positions
#     (b >= batch_sizes[t]) included and holding 0 (in a training cache: Call.zero_padded;
#     scratch regions leave them, as nothing reads them);
#   work rows (the projection with per-step batch sizes, gathered inputs, dG, dX):
#     start[t] + b for the active samples only, start[t] = sum(batch_sizes[:t]);
# the two coincide when every step is full.

from ._blas cimport Mat


ctypedef struct Vec:
    char *p                     # NULL: absent
    Py_ssize_t s                # element stride


ctypedef struct Seq:
    char *p                     # element [t][b][0]; NULL: absent
    Py_ssize_t st, sb, se       # element strides of t, b and the feature index


# A gradient Layer (Call.grad) mirrors the forward one: each field holds dL/d(that forward
# field), so grad.d[d].g[k].W receives dL/dW, grad.d[d].h0 dL/dh0 (written) and
# grad.d[d].hn dL/dh_T (read). p == NULL: absent, not read, not computed.

ctypedef struct Gate:
    # one gate of one layer and direction
    Mat W                       # [H][X] input weights
    Mat U                       # [H][H] recurrent weights
    Mat C                       # [H][H] full peephole
    Vec cdiag                   # [H] diagonal peephole
    Vec b                       # [H] bias
    bint acc_W, acc_U, acc_C, acc_b   # gradients: add to the destination (BACKPROP_ACCUMULATE)


ctypedef struct Direction:
    Gate g[4]                   # i, f, g, o
    Mat U4                      # the four U as one [4H][H] matrix when they lie so (p NULL: not)
    Mat h0, c0                  # [B][H] initial state (p NULL: zeros)
    Mat hn, cn                  # [B][H] final state, written (p NULL: not written)
    bint acc_h0, acc_c0         # gradients: add to dL/dh0, dL/dc0


# The training cache's regions of one layer (Layer.region), in buffer order, each
# [rows][width] over the cache rows, NULL where absent. Their offsets, the shapes
# training_cache_layout reports and the docs' table come from REGIONS (_workspace.pxi).
#   region              present when              holds
cdef enum:
    REGION_GATES = 0    # always                  [D*4H] the input projection, then the gates
    REGION_PREACT       # custom activations      [D*4H] the gates' pre-activations
    REGION_CELLS        # always                  [D*H] the cell after each step
    REGION_ACT_H_C      # always (an inference    [D*H] act_h(cell)
                        # does not write it)
    REGION_OUTPUT       # always                  [D*H] h after each step: the layer's output
    REGION_MASK         # layers l >= 1 when      [D*H] the dropout scale of the layer's input
                        # dropout > 0
    N_REGIONS


ctypedef struct Layer:
    Direction d[2]
    Mat W4                      # every direction's and gate's W as one [D*4H][X] matrix, or p NULL
    Py_ssize_t X                # input width: I for layer 0, D*H after
    bint full_o                 # the output gate has a full peephole (it reads the new cell)
    char *bias                  # [D][4][H] contiguous (zeros where a gate has no bias)
    char *cdiag                 # [D][4][H] contiguous diagonal peepholes, or NULL when none
    char *region[N_REGIONS]     # the training cache's regions (or scratch's): REGION_*


# How a step's recurrent products are handed to BLAS (the planner's candidates: every one
# computes the same products, in another arrangement of BLAS calls).
#   form:   FORM_* bits (below); 0: S from h_prev read in place
#   chunk:  rows of U per BLAS call (forward) or columns of dL/dh_prev (backward; with
#           FORM_SPLIT_SUMS rows of U per call); 0: the thread's whole slice in one call
#   by_vectors: -1 one gemv per sample when the batch is at most 4 (the heuristic), 0 one
#           gemm, 1 one gemv per sample
#   split:  how the team shares a step (SPLIT_* below; the same for every step of a call)
ctypedef struct Arrangement:
    int form
    int chunk
    int by_vectors
    int split


# Arrangement.form's bits
cdef enum:
    FORM_STATE_COPY = 1       # h_prev is read from a batch-fastest copy ([D][H][B] in
                              # SCRATCH_HT, written by the previous step's cell pass) instead of
                              # in place from the output region
    FORM_INTO_PROJECTION = 2  # the products accumulate (beta = 1) straight into the step's
                              # rows of the input projection, and the cell pass reads one
                              # contiguous stream per sample; without it they go to
                              # S[D*4H][B] (SCRATCH_S, batch-fastest) and the cell pass adds S
                              # to the projection
    FORM_SAMPLE_MAJOR = 4     # without FORM_INTO_PROJECTION: S lies sample-major, [B][D*4H]
                              # (beta = 0, and the cell pass reads S contiguously too, where
                              # batch-fastest it reads S a batch apart)
    FORM_SPLIT_SUMS = 8       # backward only: dL/dh_prev = dA U's sum over the 4H rows of U
                              # in several calls (beta = 1 after the first), gate by gate in
                              # chunks of Arrangement.chunk rows (a whole gate for 0), each
                              # call over the thread's every unit; without it one call sums
                              # all 4H rows (gate by gate when the gates' matrices lie apart)


# How a call's thread team shares each step (Arrangement.split, _rows.pxi's thread_share)
cdef enum:
    SPLIT_ROWS = 0          # each thread a slice of the products' rows and of the hidden
                            # units; the threads meet twice per step (the canonical split)
    SPLIT_DIRECTIONS = 1    # a team of two on a bidirectional layer: each thread one
                            # direction, whole; no meeting inside a layer's time loop
    SPLIT_SAMPLES = 2       # each thread its samples for the whole sequence, every row and
                            # unit of them; no meeting inside a layer's time loop
    SPLIT_UNITS = 3         # each thread a slice of the hidden units and, forward, the
                            # products' rows of those units in all four gates (its cells
                            # read only its own products): the threads meet once per step
    SPLIT_ROWS_SAMPLES = 4  # forward: the products as SPLIT_ROWS, the cells each thread's
                            # samples, every unit (whole rows); the backward runs SPLIT_ROWS


# The parts of a call's scratch (Call.scratch), in buffer order: scratch_sizes
# (_workspace.pxi) sizes each (0 bytes where absent), bind_scratch points Call.scratch at them.
#   part                present when              holds
cdef enum:
    SCRATCH_X = 0       # BLAS cannot read x as   [rows][I] x, gathered
                        # one matrix (x_rows)
    SCRATCH_IN          # L > 1, with dropout or  [rows][D*H] a layer's input, masked/gathered
                        # per-step batch sizes
    SCRATCH_S           # always                  [2][D*4H][B] one step's recurrent products,
                        #                         and the cells' sample-major copy of them
    SCRATCH_DG          # the backward, or per-   [rows][D*4H] dL/d(pre-activation); in a
                        # step batch sizes        forward the projection of the active rows
    SCRATCH_DX          # the backward            [rows][max(I, D*H)] dL/d(layer input)
    SCRATCH_PREV        # the backward            [D+1][rows][H] each row's previous h (or c);
                        #                         the cells
    SCRATCH_CARRY       # the backward            [3][D][B][H] dh, dc carried between steps; dc'
    SCRATCH_GRAD        # the backward            [team][grad_stride] gradient blocks BLAS
                        #                         cannot write in place
    SCRATCH_HT          # always                  [2][D][H][B] h batch-fastest (FORM_STATE_COPY):
                        #                         step s reads half s % 2, writes the other
    SCRATCH_VECTORS     # always                  [L][2][D*4H] the packed biases and diagonal
                        #                         peepholes (Layer.bias, Layer.cdiag)
    N_SCRATCH


ctypedef struct Call:
    int itemsize                # 4: float32, 8: float64
    int T, B, In, H, L, D       # In: input_size (I: a macro of <complex.h>)
    Py_ssize_t rows             # work rows: active (t, b) pairs
    const int *bs               # [T] batch sizes
    const Py_ssize_t *start     # [T] work row of (t, 0)
    int team                    # threads
    int barrier[16]             # the team's barrier (_team.h): arrivals, generation
    # activations (i, f, g, o, hidden): ActivationFunction values and parameters
    int fn[5]
    double alpha[5]
    double beta[5]
    int diag_gates              # bit k: gate k (i, f, g, o) has a diagonal peephole
    double dropout
    unsigned long long seed
    Layer *layer                # [L]
    bint zero_padded            # the regions are a training cache: padded positions get 0
    Seq x                       # [T][B][I]
    Mat x_rows                  # x as [rows][I] when BLAS reads it so, else p NULL (gathered)
    Seq y                       # [T][B][D*H] last layer's output, p NULL: not written
    # backward
    Seq dy                      # read, p NULL: zeros
    Seq dx                      # written, p NULL: not computed
    bint acc_dx
    Mat dx_rows                 # dx as [rows][I] when BLAS writes it so, else p NULL
    Layer *grad                 # [L] gradients: only Direction/Gate pointers are used
    char *scratch[N_SCRATCH]    # the parts of the scratch (SCRATCH_*), laid out by the plan
    Py_ssize_t grad_stride      # H * max(I, D*H): one thread's block of SCRATCH_GRAD
    # the planner's schedule: candidate arrangements, which one each step of each layer
    # uses, and (while tuning) each step's wall time, written by thread 0
    Arrangement arrangement[8]
    const unsigned char *pick   # [L][T] index into arrangement; NULL: arrangement[0] everywhere
    double *step_seconds        # [L][T] or NULL: not timed
