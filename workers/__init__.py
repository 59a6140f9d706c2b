"""RQ background jobs and the worker entry point. Depends on `marketplace`, never the reverse."""
