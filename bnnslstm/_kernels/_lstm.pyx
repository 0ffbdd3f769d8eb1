"""The LSTM kernels (SPEC §4-§6): every layer, step and direction of one call, without the GIL.

A call runs in one thread team (``Call.team`` threads: the caller and workers of the pool
of ``_team.h``) and
every matrix product is one gemm() of ``_blas.pxd`` on single-threaded BLAS:

forward, per layer
    projection  gates[rows][D*4H] = input[rows][X] W^T, one GEMM over every row (each
                thread a slice of the D*4H columns)
    per step    S[D*4H][B] = U h_prev^T (+ C c_prev^T), the step's products, batch-fastest
                because BLAS runs these fastest (each thread a slice of the D*4H rows);
                barrier; the fused elementwise pass over the thread's hidden units, which
                reads S transposed from cache, writes gates, cells, act_h(c) and h; barrier.
backward, per layer
    per step    elementwise (output gate, then gates i, f, g, each thread its units) into
                dG rows; barrier; dh_prev[B][H] = dG U on the thread's units.
    after       dX = dG W, dW = dG^T X, dU = dG^T H_prev, peepholes and biases: large GEMMs
                and column sums over every row.

Both directions of a bidirectional layer advance in the same step loop (direction 1 over
time backwards), so with two threads each direction has a core of its own.

Layout of every array: see _lstm.pxd. Padded positions (b >= batch_sizes[t]) of the cache
regions are 0; the work arrays (projection, dG, dX, gathered inputs) hold active rows only.
"""

include "_lstm.pxi"
