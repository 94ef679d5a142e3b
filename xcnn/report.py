"""``python -m xcnn.report``: see :mod:`xcnn.apps.report`."""
if __name__ == "__main__":
    from xcnn.apps.report import run

    run()
