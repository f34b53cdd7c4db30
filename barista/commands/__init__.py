"""The subcommands of ``barista``, one module each (see :mod:`barista.cli`)."""
