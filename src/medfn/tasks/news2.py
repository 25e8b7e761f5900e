"""NEWS2, the National Early Warning Score 2, for one set of observations.

Thresholds and bands are those of the Royal College of Physicians, *National Early Warning
Score (NEWS) 2: Standardising the assessment of acute-illness severity in the NHS*, updated
report of a working party, London: RCP, 2017 (chart 1, "The NEWS2 scoring system", and
chart 2, "NEWS thresholds and triggers"):

    parameter             3        2        1          0          1          2        3
    respiration rate /min <=8               9-11       12-20                 21-24    >=25
    SpO2 scale 1 (%)      <=91     92-93    94-95      >=96
    air or oxygen?                 oxygen              air
    systolic BP (mmHg)    <=90     91-100   101-110    111-219                        >=220
    pulse /min            <=40              41-50      51-90      91-110     111-130  >=131
    consciousness                                      alert                          C, V, P, U
    temperature (C)       <=35.0            35.1-36.0  36.1-38.0  38.1-39.0  >=39.1

Only SpO2 scale 1 is implemented: scale 2 (target 88-92% in hypercapnic respiratory failure)
needs a clinician's decision that a series of numbers cannot make.

Pure Python on purpose: this module ships in every function bundle and must not pull numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CONSCIOUSNESS_LEVELS = ("A", "C", "V", "P", "U")  # alert, new confusion, voice, pain, unresponsive


@dataclass(frozen=True)
class Observation:
    respiratory_rate: float
    spo2: float
    systolic_bp: float
    heart_rate: float
    temperature: float
    consciousness: str
    on_oxygen: bool = False

    def __post_init__(self) -> None:
        if self.consciousness not in CONSCIOUSNESS_LEVELS:
            raise ValueError(f"consciousness must be one of {CONSCIOUSNESS_LEVELS}, got {self.consciousness!r}")
        for name in ("respiratory_rate", "spo2", "systolic_bp", "heart_rate", "temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")


def _charted(value: float, decimals: int = 0) -> float:
    # The chart's bands are written at charting precision (whole breaths, beats, mmHg and
    # percent; tenths of a degree), so a measured 11.6 /min is charted, and scored, as 12.
    # Round half up rather than Python's round-half-even, as a nurse would.
    scale = 10**decimals
    return float(math.floor(value * scale + 0.5) / scale)


def _respiration(rr: float) -> int:
    rr = _charted(rr)
    if rr <= 8:
        return 3
    if rr <= 11:
        return 1
    if rr <= 20:
        return 0
    if rr <= 24:
        return 2
    return 3


def _spo2_scale1(spo2: float) -> int:
    spo2 = _charted(spo2)
    if spo2 <= 91:
        return 3
    if spo2 <= 93:
        return 2
    if spo2 <= 95:
        return 1
    return 0


def _systolic(sbp: float) -> int:
    sbp = _charted(sbp)
    if sbp <= 90:
        return 3
    if sbp <= 100:
        return 2
    if sbp <= 110:
        return 1
    if sbp <= 219:
        return 0
    return 3


def _pulse(hr: float) -> int:
    hr = _charted(hr)
    if hr <= 40:
        return 3
    if hr <= 50:
        return 1
    if hr <= 90:
        return 0
    if hr <= 110:
        return 1
    if hr <= 130:
        return 2
    return 3


def _temperature(temp: float) -> int:
    temp = _charted(temp, 1)
    if temp <= 35.0:
        return 3
    if temp <= 36.0:
        return 1
    if temp <= 38.0:
        return 0
    if temp <= 39.0:
        return 1
    return 2


def parameter_scores(obs: Observation) -> dict[str, int]:
    """The score of each of the seven NEWS2 parameters."""
    return {
        "respiratory_rate": _respiration(obs.respiratory_rate),
        "spo2": _spo2_scale1(obs.spo2),
        "air_or_oxygen": 2 if obs.on_oxygen else 0,
        "systolic_bp": _systolic(obs.systolic_bp),
        "heart_rate": _pulse(obs.heart_rate),
        "consciousness": 0 if obs.consciousness == "A" else 3,
        "temperature": _temperature(obs.temperature),
    }


def score(obs: Observation) -> int:
    """The aggregate NEWS2 score, 0 to 20."""
    return sum(parameter_scores(obs).values())


def band(total: int, any_single_three: bool) -> str:
    """The RCP clinical risk band of an aggregate score.

    0-4 is low, unless one parameter scored 3 (a "red score"), which makes it low-medium;
    5-6 is medium and 7 or more high, whatever the single parameters.
    """
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    return "low-medium" if any_single_three else "low"


def assess(obs: Observation) -> tuple[int, str]:
    """The aggregate score and its band."""
    scores = parameter_scores(obs)
    total = sum(scores.values())
    return total, band(total, any(s == 3 for s in scores.values()))
