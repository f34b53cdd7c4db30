"""The one exception type for bad user input, shared by every part of Barista."""


class InputError(ValueError):
    """Bad input (file, layer, parameter, argument). The message names what is at fault.

    The ``barista`` command prints it as one line and exits with status 2.
    """
