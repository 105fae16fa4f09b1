"""The one exception type users see: a clear, one-line-per-problem message, no traceback."""


class BBNError(Exception):
    """Bad input or a failed precondition, worded for the person running the pipeline."""
