"""``python -m xcnn.evaluate``: see :mod:`xcnn.apps.evaluate`."""
if __name__ == "__main__":
    from xcnn.apps.evaluate import run

    run()
