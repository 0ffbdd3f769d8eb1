"""NDArray descriptors: a buffer plus a layout, sizes and strides in elements (SPEC §2).

The class is compiled (``_descriptor.pyx``): it holds its buffer through the buffer
protocol and resolves, when a function is called, to the strided view the kernels read
in place. Its *logical* view is a C-order index space (``[T][B][I]`` for SNE data,
``[rows][cols]`` for either matrix layout, ...); :meth:`NDArrayDescriptor.to_numpy`
returns it as a strided numpy view after checking that every reachable element lies
inside the buffer.
"""

from ._descriptor import NDArrayDescriptor, _fill_strides, numpy_dtype

__all__ = ["NDArrayDescriptor"]
