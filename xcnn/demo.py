"""``python -m xcnn.demo CHECKPOINT``: the live draw-a-digit page; see :mod:`xcnn.apps.demo.server`."""
if __name__ == "__main__":
    from xcnn.apps.demo.server import run

    run()
