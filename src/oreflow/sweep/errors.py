"""The sweep's error type, at the bottom of the package so every module can raise it."""


class SweepError(ValueError):
    """A sweep file, store or request that cannot be used; the message names what and why."""
