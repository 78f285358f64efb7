"""The ``remixformer`` command line. One module per command group; see :mod:`remixformer.cli.main`."""
