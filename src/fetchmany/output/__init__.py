"""Output: the destination and its writers, resuming a file, and the display and totals
that watch a run from the side."""
