"""``python -m xcnn.visualize``: see :mod:`xcnn.apps.visualize`."""
if __name__ == "__main__":
    from xcnn.apps.visualize import run

    run()
