"""Counter-based dropout masks (SPEC §4): the same key always gives the same mask.

The keep decision for ``(seed, layer, t, b, unit)`` is a pure function of the key
(SplitMix64 finalisers chained over the key's parts), so the forward pass, the backward
pass's recomputation and any later call agree without storing a generator state.
"""

from cython cimport floating
from libc.stdint cimport uint64_t


cdef inline uint64_t mix(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef inline uint64_t combine(uint64_t h, uint64_t part) noexcept nogil:
    return mix(h + <uint64_t>0x9E3779B97F4A7C15 + part)


def dropout_mask(uint64_t seed, uint64_t layer, double p, floating[:, :, ::1] out):
    """Fill ``out[T][B][width]`` with 0 (dropped) or 1/(1-p) (kept) for layer ``layer``.

    A unit is kept when the top 53 bits of its hash, read as a number in [0, 1), are >= p.
    """
    cdef Py_ssize_t T = out.shape[0], B = out.shape[1], width = out.shape[2]
    cdef Py_ssize_t t, b, u
    cdef uint64_t h_layer, h_t, h_b
    cdef double u01
    cdef floating keep = <floating>(1.0 / (1.0 - p))
    with nogil:
        h_layer = combine(combine(mix(seed), layer), 0)
        for t in range(T):
            h_t = combine(h_layer, <uint64_t>t)
            for b in range(B):
                h_b = combine(h_t, <uint64_t>b)
                for u in range(width):
                    u01 = <double>(combine(h_b, <uint64_t>u) >> 11) * (1.0 / 9007199254740992.0)
                    out[t, b, u] = keep if u01 >= p else 0
