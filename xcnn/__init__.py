"""xcnn: a from-scratch convolutional network library (NumPy on CPU, CuPy + CUDA kernels on GPU)."""
__version__ = "0.1.0"
