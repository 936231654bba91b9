"""What ``xbar calibrate`` wrote, read once at the edge: the IR-drop calibration and the block fits.

Layer: cosim.calibrate. :func:`load_calibration` reads a ``calibration.json`` (and the
``blocks/fits.json`` its ``"blocks"`` entry names) or a ``fits.json`` alone into a
:class:`CalibrationSet`; a run then carries the loaded objects it needs (the
:class:`~cosim.read.irmodel.Calibration` of the IR-drop model, a device's
:class:`~cosim.write.step_table.StepTable`, the :class:`~cosim.read.periphery_fit.PeripheryFit`
of a read chain), never the path. Every problem is a
:class:`~models.errors.ParameterError` that names the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cosim.read.irmodel import Calibration
from cosim.read.periphery_fit import PeripheryFit, select_periphery_fit
from cosim.write.step_table import StepTable, select_step_table
from models.errors import ParameterError
from models.pulse import PulseShape

__all__ = ["CalibrationSet", "load_calibration", "read_json_object", "content_digest"]


def read_json_object(p: Path, what: str) -> dict:
    """The JSON object in file ``p``; a :class:`ParameterError` naming ``what`` and ``p`` if the
    file is missing, unreadable, not JSON or not an object."""
    if not p.is_file():
        raise ParameterError(f"{what} {p} does not exist")
    try:
        d = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ParameterError(f"{what} {p} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise ParameterError(f"{what} {p} cannot be read: {exc}") from None
    if not isinstance(d, dict):
        raise ParameterError(f"{what} {p} is not a JSON object")
    return d


def content_digest(obj) -> str:
    """A stable hash of a JSON-able object (sorted keys): fingerprints hash contents, not paths."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True, eq=False)
class CalibrationSet:
    """The output of ``xbar calibrate``, loaded.

    Attributes
    ----------
    source : Path
        The file given (``calibration.json`` or ``fits.json``).
    ir : Calibration or None
        The IR-drop calibration (None when a ``fits.json`` was given).
    blocks : dict or None
        The block fits (:func:`cosim.calibrate.blocks.fit_all`'s ``fits.json``; None when the
        calibration was made with ``--no-blocks``).
    blocks_source : Path or None
        Where the block fits came from.
    """

    source: Path
    ir: Calibration | None
    blocks: dict | None
    blocks_source: Path | None

    def ir_calibration(self) -> Calibration:
        if self.ir is None:
            raise ParameterError(f"{self.source} is a block-fits file: the IR-drop model needs the "
                                 "calibration.json of `xbar calibrate`")
        return self.ir

    def _blocks(self, want: str) -> dict:
        if self.blocks is None:
            raise ParameterError(f"calibration {self.source} has no 'blocks' entry: no block fits (device step "
                                 "tables, integrator/ADC transfers) were made; run `xbar calibrate` without "
                                 "--no-blocks, or pass its blocks/fits.json")
        if not isinstance(self.blocks.get(want), dict) or not self.blocks[want]:
            raise ParameterError(f"{self.blocks_source} holds no {want} fits")
        return self.blocks

    def step_table(self, device: str, shape: PulseShape | None = None) -> StepTable:
        """The step table of registry device ``device`` (for the write pulse ``shape``)."""
        return select_step_table(self._blocks("devices"), device, shape=shape, source=str(self.blocks_source))

    def periphery_fit(self, cfg) -> PeripheryFit:
        """The integrator + ADC fit that describes the read chain ``cfg`` (a
        :class:`netlists.readchain.PeripheryConfig`)."""
        return select_periphery_fit(self._blocks("periphery"), cfg, source=str(self.blocks_source))


def load_calibration(path) -> CalibrationSet:
    """Read ``path`` once: a ``calibration.json`` of ``xbar calibrate`` (its ``"blocks"`` entry,
    relative to its folder, names the block fits) or a ``blocks/fits.json``."""
    p = Path(path)
    d = read_json_object(p, "calibration file")
    if "schema" in d:                   # a calibration.json (its own "periphery" entry is export settings)
        try:
            ir = Calibration.from_json(d)
        except ParameterError as exc:
            raise ParameterError(f"calibration file {p}: {exc}") from None
        blocks = d.get("blocks")
        if not blocks:
            return CalibrationSet(p, ir, None, None)
        if not isinstance(blocks, str):
            raise ParameterError(f"calibration {p}: 'blocks' must be a path (a string), got {blocks!r}")
        src = p.parent / blocks
        return CalibrationSet(p, ir, read_json_object(src, f"block fits file (the 'blocks' entry of {p})"), src)
    if not ({"devices", "periphery", "monte_carlo"} & set(d)):
        raise ParameterError(f"{p} is neither a calibration.json nor a blocks/fits.json of `xbar calibrate`")
    return CalibrationSet(p, None, d, p)
