"""Fetching: the request policy, the worker pool and reorder window, one attempt and its
retries, the limits of a run, and what a response's body becomes."""
