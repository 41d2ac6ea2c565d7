"""The one exception type of the data layer."""


class DataError(ValueError):
    """Bad input data: the message names the file, folder or row and says what was expected."""
