# The C-level description of one LSTM call (forward and backward, docs/contract.rst), filled
# by bnnslstm/_plan.pyx after every check has passed and run by the kernels (_lstm.pxi, built
# as _lstm, _lstm_avx2 and _lstm_avx512).
#
# Rows: every (step t, sample b) pair is one row of the layer-wide arrays, time-major.
#   cache rows (the training cache's regions, REGIONS in _workspace.pxi): t*B + b, padded positions
#     (b >= batch_sizes[t]) included and holding 0;
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


ctypedef struct Layer:
    Direction d[2]
    Mat W4                      # every direction's and gate's W as one [D*4H][X] matrix, or p NULL
    Py_ssize_t X                # input width: I for layer 0, D*H after
    bint full_o                 # the output gate has a full peephole (it reads the new cell)
    char *bias                  # [D][4][H] contiguous (zeros where a gate has no bias)
    char *cdiag                 # [D][4][H] contiguous diagonal peepholes, or NULL when none
    # regions of the training cache (or scratch), row-major over the call's rows
    char *gates                 # [rows][D*4H] input projection, then gate activations
    char *preact                # [rows][D*4H] pre-activations (custom activations), or NULL
    char *cells                 # [rows][D*H] cell after each step
    char *act_h                 # [rows][D*H] act_h(cell), or NULL
    char *out                   # [rows][D*H] hidden state after each step: the layer's output
    char *mask                  # [rows][D*H] dropout scale of this layer's input, or NULL


# How a step's recurrent products are handed to BLAS (the planner's candidates: every one
# computes the same products, in another arrangement of BLAS calls).
#   form bit 1 (state copy): h_prev is read from a batch-fastest copy ([D][H][B], written by
#           the previous step's cell pass) instead of in place from the output region
#   form bit 2 (into the projection): the products accumulate (beta = 1) straight into the
#           step's rows of the input projection, and the cell pass reads one contiguous
#           stream per sample; without it they go to S[D*4H][B] (scratch, batch-fastest)
#           and the cell pass adds S to the projection
#   chunk:  rows of U per BLAS call (forward) or columns of dL/dh_prev (backward); 0: the
#           thread's whole slice in one call
#   by_vectors: -1 one gemv per sample when the batch is at most 4 (the heuristic), 0 one
#           gemm, 1 one gemv per sample
#   split:  how the team shares a step (SPLIT_* below; the same for every step of a call)
ctypedef struct Arrangement:
    int form
    int chunk
    int by_vectors
    int split


# How a call's thread team shares each step (Arrangement.split, _rows.pxi's thread_share)
cdef enum:
    SPLIT_ROWS = 0          # each thread a slice of the products' rows and of the hidden
                            # units; the threads meet twice per step (the canonical split)
    SPLIT_DIRECTIONS = 1    # a team of two on a bidirectional layer: each thread one
                            # direction, whole; no meeting inside a layer's time loop
    SPLIT_SAMPLES = 2       # each thread its samples for the whole sequence, every row and
                            # unit of them; no meeting inside a layer's time loop


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
    Seq x                       # [T][B][I]
    Mat x_rows                  # x as [rows][I] when BLAS reads it so, else p NULL (gathered)
    Seq y                       # [T][B][D*H] last layer's output, p NULL: not written
    # backward
    Seq dy                      # read, p NULL: zeros
    Seq dx                      # written, p NULL: not computed
    bint acc_dx
    Mat dx_rows                 # dx as [rows][I] when BLAS writes it so, else p NULL
    Layer *grad                 # [L] gradients: only Direction/Gate pointers are used
    # scratch, laid out by the plan (scratch_sizes in _workspace.pxi)
    char *scratch_x             # [rows][I] gathered x (when x_rows.p is NULL)
    char *scratch_in            # [rows][D*H] masked layer input (dropout)
    char *scratch_S             # [D*4H][B] one step's recurrent products
    char *scratch_dG            # [rows][D*4H] backward: dL/d(pre-activation); forward with
                                # per-step batch sizes: the input projection of the active rows
    char *scratch_dX            # [rows][max(I, D*H)] backward: dL/d(layer input)
    char *scratch_prev          # [D+1][rows][H] backward: previous h (then c) of every row, cells
    char *scratch_carry         # [3][D][B][H] backward: dh, dc carried between steps, dc'
    char *scratch_grad          # [team][grad_stride] a gradient block BLAS cannot write in place
    Py_ssize_t grad_stride      # H * max(I, D*H)
    char *scratch_hT            # [D][H][B] the hidden state batch-fastest (form 1)
    # the planner's schedule: candidate arrangements, which one each step of each layer
    # uses, and (while tuning) each step's wall time, written by thread 0
    Arrangement arrangement[8]
    const unsigned char *pick   # [L][T] index into arrangement; NULL: arrangement[0] everywhere
    double *step_seconds        # [L][T] or NULL: not timed
