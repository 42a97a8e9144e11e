"""The version, in a module of its own so `fetchmany --version` imports nothing else."""

__version__ = "1.0.0"
