"""The dropout mask as a numpy array (tests, docs): the kernels' own function."""

from cython cimport floating
from libc.stdint cimport uint64_t


def dropout_mask(uint64_t seed, uint64_t layer, double p, floating[:, :, ::1] out):
    """Fill ``out[T][B][width]`` with 0 (dropped) or 1/(1-p) (kept) for layer ``layer``.

    A unit is kept when the top 53 bits of its hash, read as a number in [0, 1), are >= p.
    """
    cdef Py_ssize_t T = out.shape[0], B = out.shape[1], width = out.shape[2]
    cdef Py_ssize_t t, b, u
    cdef uint64_t key = layer_key(seed, layer), sample
    cdef double keep = 1.0 / (1.0 - p)
    with nogil:
        for t in range(T):
            for b in range(B):
                sample = sample_key(key, t, b)
                for u in range(width):
                    out[t, b, u] = <floating>unit_scale(sample, u, p, keep)
