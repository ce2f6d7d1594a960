"""The ``rating-engine`` command line: global options, commands and the demo."""
