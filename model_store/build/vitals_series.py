"""Synthetic hourly vital-sign series for the vitals_risk reference model.

Each patient has a baseline (some chronically abnormal: COPD-like low SpO2, a low or fast
baseline), then follows one course: stable, deteriorating (sepsis, respiratory failure,
bleeding or a neurological event, with its own onset and speed, possibly starting before the
series or only after it ends), or recovering from an illness already under way. Observations
carry autocorrelated physiological noise and are charted at the chart's precision.

The label looks ahead: 1 when the NEWS2 score (medfn.tasks.news2) of the observation HORIZON hours
after the last one given is 5 or more. A model must read the trend, not just score the present.

    series, labels = generate(n, seed)   # series[i]: float32 (length, 6) in FEATURES order

Same (n, seed), same series. Not real patients: a demonstration data set only.
"""

from __future__ import annotations

import numpy as np

from medfn.tasks import news2

FEATURES = ["heart_rate", "respiratory_rate", "spo2", "systolic_bp", "temperature", "consciousness"]
HORIZON = 4  # hours between the last observation given and the one the label scores
RANGES = np.array([[20, 250], [0, 80], [50, 100], [40, 300], [30, 45], [0, 1]], dtype=np.float64)

# Change of (heart rate, respiratory rate, SpO2, systolic BP, temperature) at severity 1,
# and the severity range at which the patient stops being alert.
COURSES = {
    "sepsis": (np.array([35.0, 9.0, -4.0, -35.0, 2.0]), (0.8, 1.4)),
    "respiratory": (np.array([22.0, 12.0, -9.0, -5.0, 0.8]), (1.0, 1.6)),
    "bleeding": (np.array([40.0, 6.0, -2.0, -50.0, -0.3]), (0.9, 1.5)),
    "neurological": (np.array([-8.0, -3.0, -2.0, 30.0, 0.2]), (0.3, 0.8)),
}
NOISE_SD = np.array([3.0, 1.2, 0.8, 5.0, 0.15])  # hour-to-hour physiological variation
NOISE_PHI = 0.7  # autocorrelation of that variation from one hour to the next


# The splits the training script draws; the guards in model.toml are computed from the first.
TRAIN_SEED, VAL_SEED, HELDOUT_SEED = 0, 1, 2  # three disjoint draws of the generator
TRAIN_N, VAL_N, HELDOUT_N = 12000, 2000, 4000


def _baseline(rng: np.random.Generator) -> np.ndarray:
    hr, rr, spo2, sbp, temp = rng.normal([78, 16, 97.5, 125, 36.8], [10, 2, 1.2, 15, 0.3])
    kind = rng.random()
    if kind < 0.15:  # chronic lung disease: lives at a low saturation, breathes faster
        spo2, rr = rng.normal(93.0, 1.2), rr + 3
    elif kind < 0.25:  # runs a low blood pressure
        sbp = rng.normal(100.0, 8.0)
    elif kind < 0.35:  # runs a fast heart rate
        hr = rng.normal(102.0, 8.0)
    return np.array([hr, rr, min(spo2, 99.5), sbp, temp])


def _severity(rng: np.random.Generator, hours: np.ndarray, length: int) -> tuple[np.ndarray, str]:
    """Illness severity per hour (0 well, ~1 very unwell) and the course's kind."""
    draw = rng.random()
    kind = str(rng.choice(list(COURSES)))
    if draw < 0.45:
        return np.zeros(len(hours)), kind
    if draw < 0.8:  # deteriorating, mostly from an onset in the last 12 hours of the series
        onset = rng.uniform(length - 12.0, length + 2.0)
        rate = rng.uniform(0.04, 0.3)
        return np.clip(rate * (hours - onset), 0.0, 1.6), kind
    # Recovering from an illness under way; the recovery may only begin late in the series.
    start, rate = rng.uniform(0.5, 1.3), rng.uniform(0.03, 0.2)
    turn = rng.uniform(0.0, length)
    return np.clip(start - rate * np.clip(hours - turn, 0.0, None), 0.0, None), kind
    return np.clip(start - rate * hours, 0.0, None), kind


def _patient(rng: np.random.Generator, length: int) -> np.ndarray:
    hours = np.arange(length + HORIZON, dtype=np.float64)
    severity, kind = _severity(rng, hours, length)
    shift, (low, high) = COURSES[kind]
    noise = np.zeros((len(hours), 5))
    noise[0] = rng.normal(0.0, NOISE_SD)
    for t in range(1, len(hours)):
        noise[t] = NOISE_PHI * noise[t - 1] + np.sqrt(1 - NOISE_PHI**2) * rng.normal(0.0, NOISE_SD)
    vitals = _baseline(rng) + severity[:, None] * shift * rng.uniform(0.6, 1.4, size=5) + noise
    vitals[:, :4] = np.round(vitals[:, :4])  # whole beats, breaths, percent and mmHg, as charted
    vitals[:, 4] = np.round(vitals[:, 4], 1)
    alert = (severity < rng.uniform(low, high)).astype(np.float64)
    series = np.column_stack([vitals, 1.0 - alert])
    return np.clip(series, RANGES[:, 0], RANGES[:, 1])


def news2_of(row: np.ndarray) -> int:
    """NEWS2 of one row in FEATURES order, on room air."""
    hr, rr, spo2, sbp, temp, not_alert = (float(v) for v in row)
    return news2.score(
        news2.Observation(
            respiratory_rate=rr,
            spo2=spo2,
            systolic_bp=sbp,
            heart_rate=hr,
            temperature=temp,
            consciousness="C" if not_alert >= 0.5 else "A",
        )
    )


def generate(n: int, seed: int, min_len: int = 6, max_len: int = 48) -> tuple[list[np.ndarray], np.ndarray]:
    """n series (float32, (length, 6), length uniform in min_len..max_len) and int64 labels."""
    rng = np.random.default_rng(seed)
    series, labels = [], np.zeros(n, dtype=np.int64)
    for i in range(n):
        length = int(rng.integers(min_len, max_len + 1))
        full = _patient(rng, length)
        series.append(full[:length].astype(np.float32))
        labels[i] = int(news2_of(full[length - 1 + HORIZON]) >= 5)
    return series, labels
