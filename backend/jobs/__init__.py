"""rq glue: queues, run records, task entry points and the worker (the only package that imports rq)."""
