"""The kernels' builds (bnnslstm._kernels.available_builds, bnnslstm._plan.use_kernels):
the portable build and the AVX2/FMA and AVX-512 builds of the same source, the best one the
CPU runs picked at import."""

import numpy as np
import pytest

from bnnslstm import _plan
from bnnslstm._kernels import BUILD_MODULES, available_builds
from helpers import threaded_step


def test_every_kernel_build_gives_the_same_results():
    """The builds agree to rounding: only instruction selection differs (FMA contraction and
    vector width in the elementwise passes). The last available one is in use by default;
    a build this machine lacks is refused by name."""
    builds = available_builds()
    results = {}
    try:
        for name in builds:
            _plan.use_kernels(name)
            results[name] = [threaded_step(dtype, 2, [16, 16, 13, 8, 5, 1])
                             for dtype in (np.float32, np.float64)]
    finally:
        _plan.use_kernels()
    for name in builds[1:]:
        np.testing.assert_allclose(results[name][0], results["portable"][0], rtol=1e-4,
                                   atol=2e-5)
        np.testing.assert_allclose(results[name][1], results["portable"][1], rtol=1e-12,
                                   atol=1e-13)
    assert _plan.kernels.__name__ == BUILD_MODULES[builds[-1]]
    assert builds[0] == "portable" and set(builds) <= {"portable", "avx2", "avx512"}
    with pytest.raises(ValueError, match="'avx1024' is not available here"):
        _plan.use_kernels("avx1024")
