"""One kernel call: the checked views of a plan laid out as the kernels' ``Call`` (_kernels/_lstm.pxd).

Every view is read in place where BLAS can address it (a leading dimension, a transpose
flag, per-gate pointers); only what BLAS cannot address is gathered into scratch: see
docs/layouts.rst.
"""

from libc.stdlib cimport calloc, free
from libc.string cimport memset

from ._kernels._blas cimport Mat, addressable, mat
from ._kernels._lstm cimport Call, Direction, Gate, Layer, Seq, Vec, run_backward, run_forward

import numpy as np

from .enums import NDArrayFlags

GATES = ("input_gate", "forget_gate", "candidate_gate", "output_gate")
NO_PEEPHOLE, DIAGONAL, FULL = 0, 1, 2


cdef struct View:
    char *p
    int nd
    Py_ssize_t n[8]
    Py_ssize_t s[8]


cdef View view_of(object a) except *:
    """A numpy array as a View (strides in elements)."""
    cdef View v
    cdef int k
    cdef Py_ssize_t itemsize = a.itemsize
    v.p = <char*><size_t>a.__array_interface__["data"][0]
    v.nd = a.ndim
    for k in range(v.nd):
        v.n[k] = a.shape[k]
        v.s[k] = a.strides[k] // itemsize if a.shape[k] > 1 else 0
    return v


cdef View part(View v, Py_ssize_t index, Py_ssize_t itemsize):
    """v[index] (the first axis dropped)."""
    cdef View out
    cdef int k
    out.p = v.p + index * v.s[0] * itemsize
    out.nd = v.nd - 1
    for k in range(out.nd):
        out.n[k] = v.n[k + 1]
        out.s[k] = v.s[k + 1]
    return out


cdef Mat matrix(View v):
    """A 2-D View as a Mat."""
    return mat(v.p, v.n[0], v.n[1], v.s[0], v.s[1])


cdef Vec vector(View v):
    cdef Vec out
    out.p = v.p
    out.s = v.s[0]
    return out


cdef Mat absent_mat():
    return mat(NULL, 0, 0, 0, 0)


cdef Vec absent_vec():
    cdef Vec v
    v.p = NULL
    v.s = 0
    return v


cdef Mat merged(Mat *blocks, int count, Py_ssize_t rows, Py_ssize_t itemsize):
    """blocks[0..count) (each rows x cols) as one (count*rows) x cols matrix when they lie
    one after the other at a uniform row stride; else an absent Mat."""
    cdef Mat first = blocks[0]
    cdef Py_ssize_t rs
    cdef int k
    if first.p == NULL:
        return absent_mat()
    if rows > 1:
        rs = first.rs
    elif count > 1:
        rs = (blocks[1].p - first.p) // itemsize
    else:
        rs = first.rs
    for k in range(count):
        if blocks[k].p == NULL or blocks[k].p != first.p + k * rows * rs * itemsize:
            return absent_mat()
        if rows > 1 and blocks[k].rs != rs:
            return absent_mat()
        if first.cols > 1 and blocks[k].cs != first.cs:
            return absent_mat()
    out = mat(first.p, count * rows, first.cols, rs, first.cs)
    return out if rs > 0 and addressable(out) else absent_mat()


cdef class Kernel:
    """The C description of one call, with the memory it points into kept alive."""

    cdef Call c
    cdef object keep

    def __cinit__(self):
        self.keep = []
        memset(&self.c, 0, sizeof(Call))

    def __dealloc__(self):
        free(<void*>self.c.bs)
        free(<void*>self.c.start)
        free(self.c.layer)
        free(self.c.grad)

    # ------------------------------------------------------------------ setup
    def __init__(self, plan, regions, int team):
        """plan: a checked _plan.Plan; regions: {(name, layer): [T*B][width] array} of the
        training cache (or of scratch standing in for it)."""
        cdef Call *c = &self.c
        cdef int l, t, k
        cdef Py_ssize_t rows = 0, isz = plan.dtype.itemsize
        c.itemsize = isz
        c.T, c.B, c.In, c.H, c.L, c.D = plan.T, plan.B, plan.I, plan.H, plan.L, plan.D
        c.team = team
        bs = <int*>calloc(c.T, sizeof(int))
        start = <Py_ssize_t*>calloc(c.T, sizeof(Py_ssize_t))
        c.layer = <Layer*>calloc(c.L, sizeof(Layer))
        c.grad = <Layer*>calloc(c.L, sizeof(Layer))
        c.bs, c.start = bs, start
        if bs == NULL or start == NULL or c.layer == NULL or c.grad == NULL:
            raise MemoryError()
        for t in range(c.T):
            bs[t] = plan.batch_sizes[t]
            start[t] = rows
            rows += bs[t]
        c.rows = rows
        for k in range(5):
            c.fn[k] = plan.activations[k][0]
            c.alpha[k] = plan.activations[k][1]
            c.beta[k] = plan.activations[k][2]
        c.dropout = plan.dropout
        c.seed = plan.dropout_seed
        for l in range(c.L):
            self._layer(plan, regions, l)
        c.x = self._sequence(plan.x)
        c.x_rows = self._rows(c.x, c.In)
        if plan.y is not None:
            c.y = self._sequence(plan.y.reshape(c.T, c.B, c.D * c.H))

    cdef Seq _sequence(self, a):
        cdef View v = view_of(a)
        cdef Seq s
        s.p, s.st, s.sb, s.se = v.p, v.s[0], v.s[1], v.s[2]
        return s

    cdef Mat _rows(self, Seq s, Py_ssize_t width):
        """A [T][B][width] sequence as one [T*B][width] matrix (row t*B + b), when every
        step is full and the steps follow each other at B rows; else absent."""
        cdef Call *c = &self.c
        cdef Mat m
        if s.p == NULL or c.rows != <Py_ssize_t>c.T * c.B:
            return absent_mat()
        if c.T > 1 and c.B > 1 and s.st != c.B * s.sb:
            return absent_mat()
        m = mat(s.p, c.rows, width, s.sb if c.B > 1 else s.st, s.se)
        return m if addressable(m) else absent_mat()

    cdef _layer(self, plan, regions, int l):
        cdef Call *c = &self.c
        cdef Layer *lay = &c.layer[l]
        cdef Direction *dr
        cdef Gate *g
        cdef Py_ssize_t isz = c.itemsize, H = c.H
        cdef int d, k
        cdef Mat blocks[8]
        lay.X = c.In if l == 0 else c.D * c.H
        lay.gates = self._region(regions, "gates", l)
        lay.preact = self._region(regions, "preact", l)
        lay.cells = self._region(regions, "cells", l)
        lay.act_h = self._region(regions, "act_h_c", l)
        lay.out = self._region(regions, "output", l)
        lay.mask = self._region(regions, "mask", l)
        dtype = plan.dtype
        bias = np.zeros((c.D, 4, c.H), dtype)
        cdiag = np.zeros((c.D, 4, c.H), dtype)
        any_diag = False
        for k, gate in enumerate(plan.gates):
            if gate.b is not None:
                bias[:, k] = gate.b[l]
            if gate.peephole == DIAGONAL:
                cdiag[:, k] = gate.C[l]
                any_diag = True
            if gate.peephole == FULL:
                if k < 3:
                    lay.full_ifg = True
                else:
                    lay.full_o = True
        self.keep += [bias, cdiag]
        lay.bias = <char*><size_t>bias.__array_interface__["data"][0]
        lay.cdiag = <char*><size_t>cdiag.__array_interface__["data"][0] if any_diag else NULL
        for d in range(c.D):
            dr = &lay.d[d]
            for k, gate in enumerate(plan.gates):
                g = &dr.g[k]
                g.W = self._checked(gate.W[l][d])
                g.U = self._checked(gate.U[l, d])
                if gate.peephole == FULL:
                    g.C = self._checked(gate.C[l, d])
                blocks[k] = g.U
            dr.U4 = merged(blocks, 4, H, isz)
            dr.h0 = self._state(plan.h0, l, d)
            dr.c0 = self._state(plan.c0, l, d)
            dr.hn = self._state(plan.h_n, l, d)
            dr.cn = self._state(plan.c_n, l, d)
            for k in range(4):
                blocks[d * 4 + k] = dr.g[k].W
        lay.W4 = merged(blocks, 4 * c.D, H, isz)

    cdef Mat _checked(self, a):
        """A weight matrix (numpy view) as a Mat; a contiguous copy (once per call) when BLAS
        cannot address it."""
        cdef Mat m = matrix(view_of(a))
        if not addressable(m):
            a = np.ascontiguousarray(a)
            self.keep.append(a)
            m = matrix(view_of(a))
        return m

    cdef Mat _state(self, a, int l, int d):
        if a is None:
            return absent_mat()
        return matrix(part(part(view_of(a), l, self.c.itemsize), d, self.c.itemsize))

    cdef char* _region(self, regions, name, int l):
        array = regions.get((name, l))
        if array is None:
            return NULL
        return <char*><size_t>array.__array_interface__["data"][0]

    def scratch_bytes(self, bint backward):
        """Bytes of scratch the call needs (see Call in _lstm.pxd), and the layout."""
        cdef Call *c = &self.c
        cdef Py_ssize_t rows = c.rows, DH = c.D * c.H, DG = 4 * DH, width
        width = c.In if c.In > DH else DH
        sizes = {
            "x": rows * c.In if c.x_rows.p == NULL else 0,
            "in": rows * DH if c.L > 1 and (c.dropout > 0 or rows != c.T * c.B) else 0,
            "S": DG * c.B,
            "dG": rows * DG if backward or rows != c.T * c.B else 0,
            "dX": rows * width if backward else 0,
            "prev": (c.D + 1) * rows * c.H if backward else 0,
            "carry": 3 * c.D * c.B * c.H if backward else 0,
            "grad": c.team * c.H * (width if width > c.H else c.H) if backward else 0,
        }
        return sizes

    def bind_scratch(self, scratch, sizes):
        """Point the call's scratch fields into ``scratch`` (a numpy array, 64-byte aligned parts)."""
        cdef Call *c = &self.c
        cdef char *base = <char*><size_t>scratch.__array_interface__["data"][0]
        cdef Py_ssize_t offset = 0, isz = c.itemsize
        pointers = {}
        for name, count in sizes.items():
            pointers[name] = offset
            offset += (count * isz + 63) // 64 * 64
        if offset > scratch.nbytes:
            raise MemoryError("scratch too small")
        c.scratch_x = base + <Py_ssize_t>pointers["x"]
        c.scratch_in = base + <Py_ssize_t>pointers["in"]
        c.scratch_S = base + <Py_ssize_t>pointers["S"]
        c.scratch_dG = base + <Py_ssize_t>pointers["dG"]
        c.scratch_dX = base + <Py_ssize_t>pointers["dX"]
        c.scratch_prev = base + <Py_ssize_t>pointers["prev"]
        c.scratch_carry = base + <Py_ssize_t>pointers["carry"]
        c.scratch_grad = base + <Py_ssize_t>pointers["grad"]
        width = c.In if c.In > c.D * c.H else c.D * c.H
        c.grad_stride = c.H * (width if width > c.H else c.H)
        self.keep.append(scratch)

    def gradients(self, plan, views, writes):
        """The backward's descriptors: dL/dy, dL/dh_T, dL/dc_T read; every written gradient."""
        cdef Call *c = &self.c
        cdef Py_ssize_t isz = c.itemsize
        cdef int l, d, k
        cdef Gate *g
        cdef Direction *gr
        cdef bint acc
        if views["dy"] is not None:
            c.dy = self._sequence(views["dy"])
        for l in range(c.L):
            for d in range(c.D):
                gr = &c.grad[l].d[d]
                gr.hn = self._state(views["dh_n"], l, d)
                gr.cn = self._state(views["dc_n"], l, d)
        for _, desc, key, view in writes:
            acc = desc.flags == NDArrayFlags.BACKPROP_ACCUMULATE
            kind = key[0]
            if kind == "dx":
                c.dx = self._sequence(view)
                c.acc_dx = acc
                c.dx_rows = self._rows(c.dx, c.In)
            elif kind in ("dh0", "dc0"):
                for l in range(c.L):
                    for d in range(c.D):
                        gr = &c.grad[l].d[d]
                        if kind == "dh0":
                            gr.h0 = self._state(view, l, d)
                            gr.acc_h0 = acc
                        else:
                            gr.c0 = self._state(view, l, d)
                            gr.acc_c0 = acc
            elif kind == "dW":
                k, l = key[1], key[2]
                for d in range(c.D):
                    g = &c.grad[l].d[d].g[k]
                    g.W = matrix(part(view_of(view), d, isz))
                    g.acc_W = acc
            else:
                k = key[1]
                for l in range(c.L):
                    for d in range(c.D):
                        g = &c.grad[l].d[d].g[k]
                        v = part(part(view_of(view), l, isz), d, isz)
                        if kind == "dU":
                            g.U = matrix(v)
                            g.acc_U = acc
                        elif kind == "db":
                            g.b = vector(v)
                            g.acc_b = acc
                        elif plan.gates[k].peephole == FULL:
                            g.C = matrix(v)
                            g.acc_C = acc
                        else:
                            g.cdiag = vector(v)
                            g.acc_C = acc

    # ------------------------------------------------------------------ run
    def forward(self):
        with nogil:
            run_forward(&self.c)

    def backward(self):
        with nogil:
            run_backward(&self.c)
