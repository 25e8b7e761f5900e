"""One realistic task-route request per function, for the benchmarks that call a handler.

The same kinds of body a client sends: a radiograph PNG, a CT slice PNG, a breast-mass
record, a clinical note, a vital-sign series; all generated (seeded), none from a patient.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS = ["scan_classifier", "scan_segmenter", "breast_mass", "notes_classifier", "vitals_risk"]


def task_request(function: str) -> tuple[bytes, str]:
    """(body, content type) for POST /v1/models/<function's model>/predict."""
    sys.path.insert(0, str(REPO))
    if function == "scan_classifier":
        from model_store.build import chest_phantoms

        return chest_phantoms.to_png(chest_phantoms.generate(1, seed=1)[0][0]), "image/png"
    if function == "scan_segmenter":
        from model_store.build import ct_phantoms

        return ct_phantoms.to_png(ct_phantoms.window(ct_phantoms.generate(1, seed=1)[0][0])), "image/png"
    if function == "breast_mass":
        from model_store.build.breast_cancer_data import split

        _, x_test, _, _, names = split()
        body = json.dumps({"records": [dict(zip(names, map(float, x_test[0]), strict=True))]}).encode()
        return body, "application/json"
    if function == "notes_classifier":
        return b"Severe headache and facial droop since this morning.", "text/plain"
    if function == "vitals_risk":
        row = {
            "heart_rate": 80,
            "respiratory_rate": 16,
            "spo2": 97,
            "systolic_bp": 120,
            "temperature": 37.0,
            "consciousness": "A",
        }
        return json.dumps({"observations": [row] * 12}).encode(), "application/json"
    raise ValueError(f"no sample request for {function!r}")
