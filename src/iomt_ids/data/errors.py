"""The exception raised for raw data that cannot be read as the user expects."""


class DataError(ValueError):
    """Invalid input data. The message names the file, line or column and the fix."""
