"""The CUDA side of xcnn: the loader of ``kernels/*.cu`` (compiled once per device, cached), the
launcher, the GPU implementations of the ops and the CUDA-graph machinery. Only reached with CuPy
arrays; importing it needs no GPU (CuPy is imported lazily, through :mod:`xcnn.backend`).
Nothing here imports :mod:`xcnn.ops`: the ops call in, with the arrays' device already current.
"""
