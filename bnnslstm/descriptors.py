"""NDArray descriptors: a buffer plus a layout, sizes and strides in elements.

The class is compiled (``_descriptor.pyx``): it holds its buffer through the buffer
protocol and resolves, when a function is called, to the strided view the kernels read
in place. Its *logical* view is a C-order index space (``[T][B][I]`` for SNE data,
``[rows][cols]`` for either matrix layout, ...); :meth:`NDArrayDescriptor.to_numpy`
returns it as a strided numpy view after checking that every reachable element lies
inside the buffer.
"""

from ._descriptor import NDArrayDescriptor

__all__ = ["NDArrayDescriptor", "size_and_stride"]


def size_and_stride(array, layout=None):
    """The ``size`` and ``stride`` tuples (in elements, in BNNS's order for ``layout``)
    that describe ``array``'s memory, its axes read as the layout's logical indices.

    BNNS orders sizes and strides per layout, not as numpy does: ``FIRST_MAJOR_nD`` takes
    numpy's ``shape`` but its ``stride[0]`` belongs to the *last* index, so numpy's
    strides must be reversed; a descriptor written by hand with numpy-order strides reads
    the array transposed, without error. This helper does the reordering (it is what
    :meth:`NDArrayDescriptor.from_array` uses), for descriptors built by hand on raw
    memory::

        size, stride = size_and_stride(a, DataLayout.FIRST_MAJOR_2D)
        NDArrayDescriptor(buffer, DataLayout.FIRST_MAJOR_2D, size, stride)

    ``layout=None`` means ``VECTOR`` for 1-D arrays and ``FIRST_MAJOR_nD`` otherwise.
    Raises :class:`~bnnslstm.BNNSError` for strides no descriptor can express
    (negative, broadcast, not a whole number of elements).
    """
    descriptor = NDArrayDescriptor.from_array(array, layout)
    return tuple(descriptor.size), tuple(descriptor.stride)
