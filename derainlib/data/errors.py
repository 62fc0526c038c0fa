"""The one exception type for problems with data on disk or data arguments."""


class DatasetError(ValueError):
    """A data problem: a bad image file, a missing pair, a wrong layout, an unknown domain.

    The message always names the offending file or folder and says what is wrong with it.
    """
