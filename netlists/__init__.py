"""The circuit description (IR), one builder per circuit, validation and the SPICE writer.

Imports :mod:`models` only. Builders (:func:`netlists.crossbar.build_crossbar`,
:func:`netlists.readchain.build_read_chain`, the benches of :mod:`netlists.benches`, ...) return
a :class:`netlists.ir.Circuit`; :func:`netlists.validate.validate` checks it and
:func:`netlists.spice.write_spice` is the only producer of SPICE text.
"""
