"""``python -m xcnn.import_onnx MODEL.onnx OUT.npz``: see :mod:`xcnn.apps.import_onnx`."""
if __name__ == "__main__":
    from xcnn.apps.import_onnx import run

    run()
