"""The ``xbar`` command line: thin subcommands over the library.

Layer: cosim.cli (the top). Each subcommand parses its arguments into library values (files are
read here, once), calls one library function and prints where its results went. Options a user
does not give take the library's defaults, so ``xbar train`` and ``train(TrainConfig())`` are
the same run. Errors that xbar-cosim raises on purpose (bad input, an ngspice failure) print
one clear line (plus ngspice's log tail where there is one) and exit with status 2; nothing
already written is removed. :mod:`cosim.cli.main` holds the parser and the entry point; the
subcommands live in ``cmd_arrays`` (doctor, netlist, mvm, periphery, device, demo),
``cmd_train`` (train, data, audit), ``cmd_calibrate`` and ``cmd_deploy`` (deploy, infer).
"""

from cosim.cli.main import EXIT_USAGE, Terminated, build_parser, main

__all__ = ["EXIT_USAGE", "Terminated", "build_parser", "main"]
