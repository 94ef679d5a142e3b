"""``python -m xcnn.predict``: see :mod:`xcnn.apps.predict`."""
if __name__ == "__main__":
    from xcnn.apps.predict import run

    run()
