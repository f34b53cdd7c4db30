"""Subcommands of the ``barista`` command that belong to the Caffe side."""
