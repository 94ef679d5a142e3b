"""``python -m xcnn.export CHECKPOINT OUT.onnx``: see :mod:`xcnn.apps.export`."""
if __name__ == "__main__":
    from xcnn.apps.export import run

    run()
