"""MOSFET model cards for ngspice's built-in BSIM3v3 (level 8), written here.

Layer: models (leaf). The access transistors of 1T1R arrays, the 3T1C weight cell and the
transistor-level op-amp all use these cards, so a process change is one edit.

The ``generic180`` cards describe a generic 1.8 V, 180 nm bulk CMOS process. They are not a
foundry's: the headline numbers (threshold voltages, oxide thickness, low-field mobilities)
are the textbook values of that node (Tox = 4.1 nm, |VT0| ~ 0.4 V, u0 ~ 300 / 100 cm^2/Vs)
and every other BSIM3 parameter keeps ngspice's default. Good enough to expose circuit
behaviour (threshold, triode vs saturation, channel-length modulation, leakage trends), not
to sign off silicon.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import ParameterError, check_finite, check_positive


@dataclass(frozen=True)
class MosfetCard:
    """A BSIM3v3 (ngspice level 8) model card.

    Attributes
    ----------
    name : str
        Model name used in the deck (``M1 d g s b NAME W=... L=...``).
    polarity : str
        ``"nmos"`` or ``"pmos"``.
    vth0 : float
        Long-channel threshold voltage at zero body bias [V] (negative for PMOS).
    tox : float
        Gate-oxide thickness [m].
    u0 : float
        Low-field mobility [m^2/(V s)].
    vsat : float
        Saturation velocity [m/s].
    nch : float
        Channel doping [cm^-3] (BSIM3 keeps this one in cm^-3).
    pclm : float
        Channel-length-modulation coefficient [-].
    lmin : float
        Shortest drawn channel length the card is meant for [m].
    vdd : float
        Nominal supply of the process [V].
    """

    name: str
    polarity: str
    vth0: float
    tox: float
    u0: float
    vsat: float
    nch: float
    pclm: float
    lmin: float
    vdd: float

    def __post_init__(self) -> None:
        if self.polarity not in ("nmos", "pmos"):
            raise ParameterError(f"polarity must be 'nmos' or 'pmos', got {self.polarity!r}")
        if not self.name.isidentifier():
            raise ParameterError(f"model name must be an identifier, got {self.name!r}")
        check_finite("vth0", self.vth0)
        if (self.polarity == "nmos") != (self.vth0 > 0):
            raise ParameterError(f"vth0={self.vth0} has the wrong sign for a {self.polarity}")
        for f in ("tox", "u0", "vsat", "nch", "pclm", "lmin", "vdd"):
            check_positive(f, getattr(self, f))

    @property
    def cox(self) -> float:
        """Gate-oxide capacitance per area [F/m^2]."""
        return 3.9 * 8.854e-12 / self.tox

    @property
    def kprime(self) -> float:
        """Long-channel process transconductance u0 Cox [A/V^2]."""
        return self.u0 * self.cox

    def to_spice(self) -> str:
        """The ``.model`` line (plain SI numbers; ``u0`` given in m^2/Vs, which BSIM3 accepts)."""
        return (f".model {self.name} {self.polarity} level=8 version=3.3.0 "
                f"vth0={self.vth0:.12g} tox={self.tox:.12g} u0={self.u0:.12g} "
                f"vsat={self.vsat:.12g} nch={self.nch:.12g} pclm={self.pclm:.12g} "
                f"lmin={self.lmin:.12g}")


#: Generic 180 nm NMOS (textbook values of the node; see the module docstring).
NMOS_180 = MosfetCard("nmos180", "nmos", vth0=0.40, tox=4.1e-9, u0=0.030, vsat=8.0e4,
                      nch=2.3e17, pclm=1.3, lmin=180e-9, vdd=1.8)
#: Generic 180 nm PMOS.
PMOS_180 = MosfetCard("pmos180", "pmos", vth0=-0.42, tox=4.1e-9, u0=0.010, vsat=8.0e4,
                      nch=4.1e17, pclm=1.3, lmin=180e-9, vdd=1.8)

CARDS: dict[str, MosfetCard] = {c.name: c for c in (NMOS_180, PMOS_180)}


def model_cards(*cards: MosfetCard) -> str:
    """``.model`` lines for ``cards`` (all known cards when none is given), one per line."""
    return "\n".join(c.to_spice() for c in (cards or tuple(CARDS.values())))
