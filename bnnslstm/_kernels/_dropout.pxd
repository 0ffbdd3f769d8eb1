# Counter-based dropout masks (docs/contract.rst): the keep decision for (seed, layer, t, b, unit)
# is a pure function of the key (SplitMix64 finalisers chained over its parts), so the forward
# pass, the backward pass's recomputation and any later call agree without storing a generator
# state.

from libc.stdint cimport uint64_t


cdef inline uint64_t mix(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef inline uint64_t combine(uint64_t h, uint64_t part) noexcept nogil:
    return mix(h + <uint64_t>0x9E3779B97F4A7C15 + part)


cdef inline uint64_t layer_key(uint64_t seed, uint64_t layer) noexcept nogil:
    return combine(combine(mix(seed), layer), 0)


cdef inline uint64_t sample_key(uint64_t layer_key, uint64_t t, uint64_t b) noexcept nogil:
    return combine(combine(layer_key, t), b)


cdef inline double unit_scale(uint64_t sample_key, uint64_t unit,
                              double p, double keep) noexcept nogil:
    """0 (dropped) or keep = 1/(1-p): a unit is kept when the top 53 bits of its hash, read
    as a number in [0, 1), are >= p."""
    cdef double u01 = <double>(combine(sample_key, unit) >> 11) * (1.0 / 9007199254740992.0)
    return keep if u01 >= p else 0
