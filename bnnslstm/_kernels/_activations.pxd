# Every elementwise BNNS activation function and its derivative (docs/activations.rst), inline and
# nogil, one source for float and double. The numbering is ActivationFunction's (BNNS's
# values). act_forward/act_derivative work on one value; activate/slope on a chunk held
# in the caller's local arrays, where sigmoid and tanh (the default activations) get loops
# the compiler vectorises.
#
# float32 sigmoid and tanh use fast_expf: range reduction to [-ln2/2, ln2/2], a degree-6
# polynomial and the exponent bits set directly (relative error below 2e-7 on the whole
# float range; sigmoid and tanh built on it stay within 3e-7 absolute of the exact
# functions, tests/test_activations.py checks the bound). float64 calls libm.
#
# IEEE semantics: every function maps NaN to NaN and every derivative is NaN at NaN, in
# both types and every kernel build (docs/activations.rst, "Non-finite values"). Comparisons
# with NaN are false, so each piecewise definition is written with the comparison whose
# false branch returns x itself (e.g. relu is ``0 if x <= 0 else x``, not ``x if x > 0 else
# 0``); infinities give the limits (sigmoid(-inf) = 0, tanh(inf) = 1).
#
# At a kink each derivative takes one side, fixed by the comparisons below and listed in
# docs/activations.rst ("Derivatives at kinks"): relu'(0) = 0, abs'(0) = 0, leaky-relu'(0) =
# elu'(0) = 1, clamp'/hard-sigmoid' take the inner side at both ends, relu6'/hard-swish'
# the outer side, shrink'/threshold' follow the strict inequalities of their definitions.

from cython cimport floating
from libc.math cimport exp, expf, tanh, tanhf, log1p, log1pf, erf, erff, fabs, fabsf
from libc.stdint cimport int32_t
from libc.string cimport memcpy

cdef enum:
    SIGMOID = 3
    TANH = 4


cdef inline float fast_expf(float x) noexcept nogil:
    """e^x in float32 without libm: 2^n e^r, n = round(x / ln2), |r| <= ln2/2. NaN gives
    NaN, x past 88.4 infinity (the scale 2^128), below -87 about 2^-126 (its limit 0 is not
    needed: 1 + that is 1 in the sigmoid and tanh built on it)."""
    cdef float n, r, p, scale, y
    cdef int32_t bits
    # the clamps turn NaN into a number (their comparisons are false), so that the integer
    # conversion below is defined; the last line gives NaN back
    y = x if x < <float>89.0 else <float>89.0
    y = y if y > <float>-87.0 else <float>-87.0
    # round to nearest by adding and removing 1.5 * 2^23 (vectorises without SSE4.1)
    n = (y * <float>1.44269504088896341 + <float>12582912.0) - <float>12582912.0
    r = y - n * <float>0.693359375          # ln2 split in two for an exact product
    r = r + n * <float>2.12194440e-4
    p = <float>1.0 + r * (<float>1.0 + r * (<float>0.5 + r * (<float>0.166666667 + r * (
        <float>0.0416666667 + r * (<float>0.00833333333 + r * <float>0.00138888889)))))
    bits = (<int32_t>n + 127) << 23
    memcpy(&scale, &bits, sizeof(float))
    return p * scale if x == x else x


cdef inline float fast_sigmoidf(float x) noexcept nogil:
    return <float>1.0 / (<float>1.0 + fast_expf(-x))


cdef inline float fast_tanhf(float x) noexcept nogil:
    """1 - 2 / (1 + e^2x); near 0 a short series keeps the relative error small."""
    cdef float big = <float>1.0 - <float>2.0 / (<float>1.0 + fast_expf(<float>2.0 * x))
    cdef float x2 = x * x
    cdef float small = x * (<float>1.0 + x2 * (<float>-0.333333333 + x2 * (
        <float>0.133333333 + x2 * <float>-0.0539682540)))
    return small if fabsf(x) < <float>0.125 else big


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating tanh_(floating x) noexcept nogil:
    if floating is float:
        return fast_tanhf(x)
    else:
        return tanh(x)


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating _erf(floating x) noexcept nogil:
    if floating is float:
        return erff(x)
    else:
        return erf(x)


cdef inline floating _abs(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef inline floating sigmoid(floating x) noexcept nogil:
    """1 / (1 + e^-x) without overflow for large |x|."""
    cdef floating e
    if floating is float:
        return fast_sigmoidf(x)
    else:
        if x >= 0:
            return 1 / (1 + _exp(-x))
        e = _exp(x)
        return e / (1 + e)


cdef inline floating softplus(floating x) noexcept nogil:
    """log(1 + e^x), stable for large |x|."""
    if x > 0:
        return x + _log1p(_exp(-x))
    return _log1p(_exp(x))


cdef inline floating act_forward(int fn, floating x, floating alpha, floating beta) noexcept nogil:
    """f(x) for ActivationFunction ``fn`` with parameters alpha, beta."""
    cdef floating s
    if fn == 0:     # IDENTITY
        return x
    elif fn == 1:   # RECTIFIED_LINEAR
        return 0 if x <= 0 else x
    elif fn == 2:   # LEAKY_RECTIFIED_LINEAR
        return x if x >= 0 else alpha * x
    elif fn == 3:   # SIGMOID
        return sigmoid(x)
    elif fn == 4:   # TANH
        return tanh_(x)
    elif fn == 5:   # SCALED_TANH
        return alpha * tanh_(beta * x)
    elif fn == 6:   # ABS
        return _abs(x)
    elif fn == 7:   # LINEAR
        return alpha * x
    elif fn == 8:   # CLAMP
        return alpha if x < alpha else (beta if x > beta else x)
    elif fn == 12:  # GELU_APPROXIMATION
        return <floating>0.5 * x * (1 + tanh_(alpha * (x + beta * x * x * x)))
    elif fn == 15:  # HARD_SIGMOID
        s = alpha * x + beta
        return 0 if s < 0 else (1 if s > 1 else s)
    elif fn == 16:  # SOFTPLUS
        return alpha * softplus(beta * x)
    elif fn == 17:  # SOFTSIGN
        return x / (1 + _abs(x))
    elif fn == 18:  # ELU
        return x if x >= 0 else alpha * (_exp(x) - 1)
    elif fn == 19:  # CLAMPED_LEAKY_RECTIFIED_LINEAR
        s = x if x >= 0 else alpha * x
        return beta if s >= beta else s
    elif fn == 20:  # LINEAR_WITH_BIAS
        return alpha * x + beta
    elif fn == 22:  # LOG_SIGMOID
        return -softplus(-x)
    elif fn == 23:  # SELU, with its fixed constants (Klambauer et al. 2017)
        return (<floating>1.0507009873554804934
                * (x if x >= 0 else <floating>1.6732632423543772848 * (_exp(x) - 1)))
    elif fn == 24:  # CELU
        return x if x >= 0 else alpha * (_exp(x / alpha) - 1)
    elif fn == 25:  # HARD_SHRINK
        return 0 if _abs(x) <= alpha else x
    elif fn == 26:  # SOFT_SHRINK (x - x: 0 inside the band, NaN for NaN)
        return x - alpha if x > alpha else (x + alpha if x < -alpha else x - x)
    elif fn == 27:  # TANH_SHRINK
        return x - tanh_(x)
    elif fn == 28:  # THRESHOLD
        return beta if x <= alpha else x
    elif fn == 30:  # HARD_SWISH, Apple's x ReLU6(x + 3) / 6 (no parameter)
        s = x + 3
        return x * (0 if s < 0 else (6 if s > 6 else s)) / 6
    elif fn == 31:  # SILU
        return x * sigmoid(x)
    elif fn == 32:  # RELU6
        return 0 if x < 0 else (6 if x > 6 else x)
    elif fn == 33:  # ERF
        return _erf(x)
    elif fn == 34:  # GELU
        return <floating>0.5 * x * (1 + _erf(x * <floating>0.70710678118654752440))
    elif fn == 35:  # GELU_APPROXIMATION_SIGMOID
        return x * sigmoid(<floating>1.702 * x)
    return x


cdef inline floating act_derivative(int fn, floating x, floating y, floating alpha,
                                    floating beta) noexcept nogil:
    """f'(x) for ActivationFunction ``fn``, given y = f(x); NaN at NaN."""
    cdef floating s, t, u
    if x != x:
        return x
    if fn == 0:
        return 1
    elif fn == 1:
        return 1 if x > 0 else 0
    elif fn == 2:
        return 1 if x >= 0 else alpha
    elif fn == 3:
        return y * (1 - y)
    elif fn == 4:
        return 1 - y * y
    elif fn == 5:
        t = tanh_(beta * x)
        return alpha * beta * (1 - t * t)
    elif fn == 6:
        return 1 if x > 0 else (-1 if x < 0 else 0)
    elif fn == 7:
        return alpha
    elif fn == 8:
        return 0 if (x < alpha or x > beta) else 1
    elif fn == 12:
        u = alpha * (x + beta * x * x * x)
        t = tanh_(u)
        return (<floating>0.5 * (1 + t)
                + <floating>0.5 * x * (1 - t * t) * alpha * (1 + 3 * beta * x * x))
    elif fn == 15:
        s = alpha * x + beta
        return 0 if (s < 0 or s > 1) else alpha
    elif fn == 16:
        return alpha * beta * sigmoid(beta * x)
    elif fn == 17:
        s = 1 + _abs(x)
        return 1 / (s * s)
    elif fn == 18:
        return 1 if x >= 0 else alpha * _exp(x)
    elif fn == 19:
        s = x if x >= 0 else alpha * x
        if s >= beta:
            return 0
        return 1 if x >= 0 else alpha
    elif fn == 20:
        return alpha
    elif fn == 22:
        return sigmoid(-x)
    elif fn == 23:
        return (<floating>1.0507009873554804934
                * (1 if x >= 0 else <floating>1.6732632423543772848 * _exp(x)))
    elif fn == 24:
        return 1 if x >= 0 else _exp(x / alpha)
    elif fn == 25:
        return 1 if _abs(x) > alpha else 0
    elif fn == 26:
        return 1 if (x > alpha or x < -alpha) else 0
    elif fn == 27:
        t = tanh_(x)
        return t * t
    elif fn == 28:
        return 1 if x > alpha else 0
    elif fn == 30:  # (2x + 3) / 6 strictly inside (-3, 3); the outer sides at -3 and 3
        if x <= -3:
            return 0
        if x >= 3:
            return 1
        return (2 * x + 3) / 6
    elif fn == 31:
        s = sigmoid(x)
        return s * (1 + x * (1 - s))
    elif fn == 32:
        return 1 if (x > 0 and x < 6) else 0
    elif fn == 33:
        return <floating>1.12837916709551257390 * _exp(-x * x)  # 2/sqrt(pi)
    elif fn == 34:
        return (<floating>0.5 * (1 + _erf(x * <floating>0.70710678118654752440))
                + x * <floating>0.39894228040143267794 * _exp(-x * x / 2))
    elif fn == 35:
        s = sigmoid(<floating>1.702 * x)
        return s + x * <floating>1.702 * s * (1 - s)
    return 1


cdef inline void activate(int fn, double alpha, double beta,
                          floating *v, Py_ssize_t n) noexcept nogil:
    """v[i] = f(v[i]) for i < n, f = ActivationFunction fn (v: the caller's local chunk).
    Sigmoid and tanh (the defaults) are small loops the compiler inlines and vectorises;
    the other functions go through act_forward's switch, out of line."""
    cdef Py_ssize_t i
    if fn == SIGMOID:
        for i in range(n):
            v[i] = sigmoid(v[i])
    elif fn == TANH:
        for i in range(n):
            v[i] = tanh_(v[i])
    else:
        activate_any(fn, alpha, beta, v, n)


cdef inline void activate_any(int fn, double alpha, double beta,
                              floating *v, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating a = <floating>alpha, b = <floating>beta
    for i in range(n):
        v[i] = act_forward(fn, v[i], a, b)


cdef inline void slope(int fn, double alpha, double beta, const floating *x, const floating *y,
                       floating *d, Py_ssize_t n) noexcept nogil:
    """d[i] = f'(x[i]) given y[i] = f(x[i]); sigmoid and tanh read only y (x may be NULL)."""
    cdef Py_ssize_t i
    if fn == SIGMOID:
        for i in range(n):
            d[i] = y[i] * (1 - y[i])
    elif fn == TANH:
        for i in range(n):
            d[i] = 1 - y[i] * y[i]
    else:
        slope_any(fn, alpha, beta, x, y, d, n)


cdef inline void slope_any(int fn, double alpha, double beta, const floating *x, const floating *y,
                           floating *d, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating a = <floating>alpha, b = <floating>beta
    for i in range(n):
        d[i] = act_derivative(fn, x[i], y[i], a, b)
