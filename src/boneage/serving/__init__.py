"""Serving a trained run, ensemble or exported model over HTTP: the model, the request batching,
the FastAPI app with its web page, and a bounded load test."""
