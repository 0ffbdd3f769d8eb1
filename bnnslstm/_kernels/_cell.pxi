# The cell maths: the fused elementwise pass of one sample's hidden units, forward
# (cell_chunk) and backward (gradient_chunk), on CHUNK units at a time that stay in L1.
# Nothing here knows where a row lies: the callers (_forward.pxi, _backward.pxi) hand
# pointers and strides. Included by _lstm.pxi.


cdef void cell_chunk(floating *typ, const Call *c, Py_ssize_t n, Py_ssize_t H,
                     const floating *proj, floating *g, floating *a,
                     const floating *s,
                     const floating *bias, const floating *cdiag,
                     const floating *c_prev, Py_ssize_t cps,
                     floating *cell, floating *act_h_c, floating *h, floating *y, Py_ssize_t ys,
                     int part) noexcept nogil:
    """The forward cell for n (<= CHUNK) hidden units of one sample. proj, g, a, bias, cdiag
    and s (the step's products, NULL: already added into proj) hold the four gates H apart;
    y (stride ys) unless NULL receives h too.

        a_k = proj_k + s_k + b_k (+ cdiag_k * c_prev)   k = i, f, g;  gate_k = act_k(a_k)
        c' = f*c_prev + i*g
        a_o = proj_o + s_o + b_o (+ cdiag_o * c');  o = act_o(a_o);  h = o * act_h(c')
    """
    cdef floating v[4][CHUNK]
    cdef floating cp[CHUNK]
    cdef floating cn[CHUNK]
    cdef floating th[CHUNK]
    cdef Py_ssize_t i
    cdef int k
    if part & 1:
        if c_prev == NULL:
            for i in range(n):
                cp[i] = 0
        elif cps == 1:
            for i in range(n):
                cp[i] = c_prev[i]
        else:
            for i in range(n):
                cp[i] = c_prev[i * cps]
        for k in range(3):
            if s != NULL:
                for i in range(n):
                    v[k][i] = proj[k * H + i] + s[k * H + i] + bias[k * H + i]
            else:
                for i in range(n):
                    v[k][i] = proj[k * H + i] + bias[k * H + i]
            if cdiag != NULL and c.diag_gates & (1 << k):
                for i in range(n):
                    v[k][i] = v[k][i] + cdiag[k * H + i] * cp[i]
            if a != NULL:
                for i in range(n):
                    a[k * H + i] = v[k][i]
            activate(c.fn[k], c.alpha[k], c.beta[k], v[k], n)
            for i in range(n):
                g[k * H + i] = v[k][i]
        for i in range(n):
            cn[i] = v[1][i] * cp[i] + v[0][i] * v[2][i]
        for i in range(n):
            cell[i] = cn[i]
    if part & 2:
        if not part & 1:
            for i in range(n):
                cn[i] = cell[i]
        if s != NULL:
            for i in range(n):
                v[3][i] = proj[3 * H + i] + s[3 * H + i] + bias[3 * H + i]
        else:
            for i in range(n):
                v[3][i] = proj[3 * H + i] + bias[3 * H + i]
        if cdiag != NULL and c.diag_gates & 8:
            for i in range(n):
                v[3][i] = v[3][i] + cdiag[3 * H + i] * cn[i]
        if a != NULL:
            for i in range(n):
                a[3 * H + i] = v[3][i]
        activate(c.fn[3], c.alpha[3], c.beta[3], v[3], n)
        for i in range(n):
            g[3 * H + i] = v[3][i]
            th[i] = cn[i]
        activate(c.fn[4], c.alpha[4], c.beta[4], th, n)
        if act_h_c != NULL:
            for i in range(n):
                act_h_c[i] = th[i]
        for i in range(n):
            h[i] = v[3][i] * th[i]
        if y != NULL:
            for i in range(n):
                y[i * ys] = v[3][i] * th[i]


cdef void gradient_chunk(floating *typ, const Call *c, Py_ssize_t n, Py_ssize_t H,
                         const floating *g, const floating *a, const floating *cell,
                         const floating *act_h_c, const floating *cdiag,
                         const floating *c_prev, Py_ssize_t cps,
                         const floating *dy, Py_ssize_t dys,
                         floating *carry_h, floating *carry_c, floating *dc_step,
                         floating *dg, int part) noexcept nogil:
    """The backward cell for n (<= CHUNK) hidden units of one sample. carry_h, carry_c: dL/dh and
    dL/dc flowing back from the later step; dc_step: dL/dc' of this step.

    part 1   dh = dy + carry_h;  dA_o = dh * act_h(c') * act_o'(a_o)
             dc' = carry_c + dh * o * act_h'(c') (+ cdiag_o * dA_o)
    part 2   dA_i = dc' g act_i'(a_i);  dA_f = dc' c_prev act_f'(a_f);  dA_g = dc' i act_g'(a_g)
             carry_c = dc' f (+ sum_k cdiag_k dA_k)
    """
    cdef floating dh[CHUNK]
    cdef floating th[CHUNK]
    cdef floating sl[CHUNK]
    cdef floating cp[CHUNK]
    cdef floating da[3][CHUNK]
    cdef Py_ssize_t i
    cdef int k
    if part == 1:
        for i in range(n):
            dh[i] = carry_h[i]
        if dy != NULL:
            for i in range(n):
                dh[i] = dh[i] + dy[i * dys]
        if act_h_c != NULL:
            for i in range(n):
                th[i] = act_h_c[i]
        else:  # not cached: act_h(c') again
            for i in range(n):
                th[i] = cell[i]
            activate(c.fn[4], c.alpha[4], c.beta[4], th, n)
        slope(c.fn[3], c.alpha[3], c.beta[3], <const floating*>NULL if a == NULL else a + 3 * H,
              g + 3 * H, sl, n)
        for i in range(n):
            dg[3 * H + i] = dh[i] * th[i] * sl[i]
        slope(c.fn[4], c.alpha[4], c.beta[4], cell, th, sl, n)
        for i in range(n):
            dc_step[i] = carry_c[i] + dh[i] * g[3 * H + i] * sl[i]
        if cdiag != NULL and c.diag_gates & 8:
            for i in range(n):
                dc_step[i] = dc_step[i] + cdiag[3 * H + i] * dg[3 * H + i]
        return
    if c_prev == NULL:
        for i in range(n):
            cp[i] = 0
    elif cps == 1:
        for i in range(n):
            cp[i] = c_prev[i]
    else:
        for i in range(n):
            cp[i] = c_prev[i * cps]
    slope(c.fn[0], c.alpha[0], c.beta[0], a, g, sl, n)
    for i in range(n):
        da[0][i] = dc_step[i] * g[2 * H + i] * sl[i]
    slope(c.fn[1], c.alpha[1], c.beta[1], <const floating*>NULL if a == NULL else a + H,
          g + H, sl, n)
    for i in range(n):
        da[1][i] = dc_step[i] * cp[i] * sl[i]
    slope(c.fn[2], c.alpha[2], c.beta[2], <const floating*>NULL if a == NULL else a + 2 * H,
          g + 2 * H, sl, n)
    for i in range(n):
        da[2][i] = dc_step[i] * g[i] * sl[i]
    for k in range(3):
        for i in range(n):
            dg[k * H + i] = da[k][i]
    for i in range(n):
        carry_c[i] = dc_step[i] * g[H + i]
    if cdiag != NULL:  # the gates with a diagonal peephole (C * c'), in gate order
        for k in range(3):
            if c.diag_gates & (1 << k):
                for i in range(n):
                    carry_c[i] = carry_c[i] + cdiag[k * H + i] * da[k][i]
