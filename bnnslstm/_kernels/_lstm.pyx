"""The LSTM kernels, portable build: every layer, step and direction of one call, without the GIL.

A call runs in one thread team (``Call.team`` threads: the caller and workers of the pool
of ``_team.h``) and every matrix product is one gemm() of ``_blas.pxd`` on single-threaded
BLAS:

forward, per layer
    projection  proj[rows][D*4H] = input[rows][X] W^T, one GEMM over every row; each thread
                takes a slice of the larger of the two dimensions
    per step    the recurrent products U h_prev^T (+ C c_prev^T) of the D*4H rows, each
                thread a slice of them, in the BLAS arrangement the planner picked for the
                step; barrier; the fused elementwise pass over the thread's hidden units
                (gates, cells, act_h(c), h); barrier.
backward, per layer
    per step    elementwise (output gate, then gates i, f, g, each thread its units) into
                dG rows; barrier; dh_prev[B][H] = dG U on the thread's units.
    after       dX = dG W, dW = dG^T X, dU = dG^T H_prev, peepholes and biases: large GEMMs
                (each thread a slice of the output rows) and column sums over every row.

Both directions of a bidirectional layer advance in the same step loop (direction 1 over
time backwards): with two threads, each direction's rows are one thread's slice.

The source is _lstm.pxi and the tier files it includes; the row layouts are in _call.pxd.
Padded positions (b >= batch_sizes[t]) of the cache regions are 0; the work arrays
(projection, dG, dX, gathered inputs) hold active rows only.
"""

include "_lstm.pxi"
