"""`speechfm serve`: the HTTP service of the `api/` package, run with uvicorn."""
