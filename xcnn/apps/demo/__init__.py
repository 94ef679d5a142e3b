"""The live draw-a-digit page (``python -m xcnn.demo CHECKPOINT``).

:mod:`.model` computes what the page shows for one drawing (no web code), :mod:`.server` serves the
page (Starlette + uvicorn, the ``demo`` extra) from ``static/``, and :mod:`.browser` drives it in
headless Chromium for the browser test and the README's screenshot.
"""
