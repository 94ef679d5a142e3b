"""The CPU side of xcnn: the only package that knows about threads, BLAS and Numba.

``config`` holds the settings (one :class:`~xcnn.cpu.config.CpuConfig`, from the environment);
``threads`` splits work over xcnn's thread pool; ``gemm`` keeps skinny matrix products off
OpenBLAS's thread pool; ``numpy_*`` are the pure-NumPy implementations of the ops, ``numba_ops``
drives the compiled kernels of ``_nb_*``. Nothing here imports :mod:`xcnn.ops`: the ops call in.
"""
