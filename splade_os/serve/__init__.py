"""`splade-os serve`: one HTTP service for applications in any language (the `serve` extra: starlette, uvicorn,
prometheus-client). `batcher.py` gathers concurrent requests into encoder runs, `encoding.py` the shapes vectors are
answered in, `requests.py` the bodies accepted and their limits, `searchers.py` a searcher per index, `app.py` the
endpoints; docs/serving.md describes them."""
