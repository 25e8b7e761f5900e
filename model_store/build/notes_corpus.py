"""Synthetic clinical notes for the notes_classifier reference model, and its tokenizer.

Every note names its own category's complaint, but also names symptoms of any category
*negated* ("denies chest pain"), past history of any category ("hx of asthma"),
and normal results of other categories' tests ("ECG unremarkable"). So which symptom words
appear says little; what is said about them says the rest, and a bag of words is not enough.
Synonyms, abbreviations, typos and shuffled sections vary the wording.

    texts, labels = generate(n, seed)   # labels index CATEGORIES
    texts, labels, planted = generate_planted(n, seed)   # the same notes, and what each plants

`planted` gives, per note, the phrases of its own specialty that it states positively, as the
template wrote them before typos and case, by kind: "complaint" (always), "finding", "test"
(ordered) and "plan" (when drawn); empty for routine notes, which have none. They are what
an explanation of the note's category may point at (tests/explain). Same (n, seed), same
notes. Not real patients: a demonstration corpus only.
"""

from __future__ import annotations

import re

import numpy as np

CATEGORIES = ["cardiology", "respiratory", "neurology", "gastroenterology", "routine"]
PATTERN = re.compile(r"[a-z0-9]+")
MAX_TOKENS = 128
PAD_ID, UNK_ID = 0, 1

# Per specialty (routine has none of its own): complaints, exam findings, tests, plans.
SYMPTOMS = {
    "cardiology": [
        "chest pain",
        "cp",
        "chest tightness",
        "chest pressure",
        "substernal chest discomfort",
        "palpitations",
        "racing heart",
        "heart pounding",
        "syncope",
        "passing out",
        "leg swelling",
        "ankle edema",
        "orthopnea",
        "exertional chest pain",
        "dyspnea on exertion",
    ],
    "respiratory": [
        "cough",
        "productive cough",
        "shortness of breath",
        "sob",
        "dyspnea",
        "wheezing",
        "wheeze",
        "hemoptysis",
        "coughing up blood",
        "pleuritic pain",
        "green sputum",
        "chest congestion",
        "difficulty breathing",
        "night sweats and cough",
        "dry cough",
    ],
    "neurology": [
        "headache",
        "ha",
        "migraine",
        "dizziness",
        "vertigo",
        "numbness",
        "tingling in hands",
        "weakness of left arm",
        "slurred speech",
        "facial droop",
        "seizure",
        "blurred vision",
        "confusion",
        "memory loss",
        "tremor",
        "word finding difficulty",
    ],
    "gastroenterology": [
        "abdominal pain",
        "abd pain",
        "epigastric pain",
        "nausea",
        "vomiting",
        "n v",
        "diarrhea",
        "constipation",
        "heartburn",
        "reflux",
        "blood in stool",
        "melena",
        "bloating",
        "jaundice",
        "dysphagia",
        "ruq pain",
    ],
}
FINDINGS = {
    "cardiology": [
        "irregularly irregular rhythm",
        "systolic murmur",
        "jvd to angle of jaw",
        "tachycardic to 120s",
        "bilateral pitting edema",
        "s3 gallop",
    ],
    "respiratory": [
        "crackles at bases",
        "diffuse expiratory wheezes",
        "decreased breath sounds on right",
        "sat 89 percent on ra",
        "coarse rhonchi",
        "accessory muscle use",
    ],
    "neurology": [
        "left sided weakness 4 of 5",
        "positive romberg",
        "horizontal nystagmus",
        "pronator drift",
        "left facial droop",
        "ataxic gait",
    ],
    "gastroenterology": [
        "ruq tenderness",
        "epigastric tenderness",
        "guarding",
        "hyperactive bowel sounds",
        "positive murphy sign",
        "distended abdomen",
    ],
}
TESTS = {
    "cardiology": ["ecg", "ekg", "troponin", "echo", "stress test", "holter monitor", "bnp"],
    "respiratory": ["chest x ray", "cxr", "spirometry", "peak flow", "sputum culture", "abg"],
    "neurology": ["ct head", "mri brain", "eeg", "lumbar puncture", "carotid doppler"],
    "gastroenterology": ["lfts", "lipase", "abdominal ultrasound", "colonoscopy", "egd", "stool studies"],
}
PLANS = {
    "cardiology": [
        "start aspirin 81",
        "start metoprolol",
        "refer to cardiology",
        "cardiology consult",
        "nitroglycerin prn",
        "start furosemide",
        "anticoagulation discussed",
    ],
    "respiratory": [
        "albuterol nebs",
        "start prednisone burst",
        "azithromycin x 5 days",
        "pulm consult",
        "inhaler technique reviewed",
        "start tiotropium",
        "incentive spirometry",
    ],
    "neurology": [
        "neurology consult",
        "start sumatriptan",
        "stroke alert called",
        "start levetiracetam",
        "refer to neuro",
        "seizure precautions",
    ],
    "gastroenterology": [
        "start omeprazole",
        "ppi bid",
        "gi consult",
        "clear liquid diet",
        "ondansetron prn",
        "refer to gastroenterology",
        "hold nsaids",
    ],
}
HISTORY = [
    "htn",
    "hypertension",
    "cad",
    "chf",
    "afib",
    "mi in 2015",
    "copd",
    "asthma",
    "osa",
    "migraines",
    "prior stroke",
    "epilepsy",
    "gerd",
    "ibs",
    "cholecystectomy",
    "t2dm",
    "hyperlipidemia",
    "hypothyroidism",
]
ROUTINE_REASONS = [
    "annual physical",
    "annual wellness visit",
    "routine follow up",
    "medication refill",
    "flu vaccine",
    "pre employment physical",
    "well visit",
    "health maintenance visit",
    "routine check up",
    "preventive care visit",
]
ROUTINE_PLANS = [
    "continue current meds",
    "labs in 1 year",
    "return in 12 months",
    "age appropriate screening discussed",
    "vaccines up to date",
    "diet and exercise counseling",
    "refills sent",
    "rtc prn",
]
MINOR_COMPLAINTS = [
    "dry skin",
    "seasonal allergies",
    "mild fatigue",
    "knee stiffness",
    "trouble sleeping",
    "low back stiffness",
    "a wart on r hand",
]
GENERIC_PLANS = [
    "follow up in 1 week",
    "return precautions given",
    "symptomatic care",
    "recheck in 2 weeks",
    "call if worse",
    "labs today",
    "pt agrees with plan",
]
FILLER = [
    "pt seen with daughter.",
    "vitals reviewed.",
    "discussed with attending.",
    "nonsmoker.",
    "former smoker 20 pack years.",
    "lives alone.",
    "no known drug allergies.",
    "nkda.",
    "allergic to pcn.",
    "works as a teacher.",
    "etoh socially.",
    "pt is a poor historian.",
    "interpreter used.",
]

POSITIVE = [
    "c/o {}",
    "reports {}",
    "complains of {}",
    "presents with {}",
    "endorses {}",
    "{} x {d}",
    "here for {}",
    "new onset {}",
    "worsening {} for {d}",
    "cc: {}",
    "{} for {d}",
    "having {}",
    "patient reports {}",
    "pt states {} x {d}",
]
QUALIFIERS = ["severe", "mild", "intermittent", "constant", "sudden", "acute", "progressive", "recurrent"]
NEGATIVE = [
    "denies {}",
    "no {}",
    "negative for {}",
    "{} denied",
    "without {}",
    "no complaints of {}",
    "ros negative for {}",
    "pt denies any {}",
    "no hx of recent {}",
    "does not report {}",
]
RESOLVED = ["prior {} now resolved", "{} resolved", "had {} last year, none since", "no further {}"]
DURATIONS = ["2 days", "3 days", "1 week", "2 weeks", "a month", "several hours", "3 hrs", "yesterday", "2d", "1 wk"]


# The splits the training script draws; the guards in model.toml are computed from the first.
TRAIN_SEED, VAL_SEED, HELDOUT_SEED = 0, 1, 2  # three disjoint draws of the generator
TRAIN_N, VAL_N, HELDOUT_N = 8000, 1000, 2000


def tokenize(text: str) -> list[str]:
    """The serving tokenizer, as model.toml describes it: lowercase, then [a-z0-9]+ runs."""
    return PATTERN.findall(text.lower())


def encode(text: str, vocab: dict[str, int], max_tokens: int = MAX_TOKENS) -> list[int]:
    """Token ids, unknown words to UNK_ID, truncated to max_tokens (no padding)."""
    return [vocab.get(t, UNK_ID) for t in tokenize(text)[:max_tokens]]


def _pick(rng: np.random.Generator, items: list[str], k: int = 1) -> list[str]:
    return [items[i] for i in rng.choice(len(items), size=min(k, len(items)), replace=False)]


def _phrase(rng: np.random.Generator, templates: list[str], symptom: str) -> str:
    return _pick(rng, templates)[0].format(symptom, d=_pick(rng, DURATIONS)[0])


def _typo(rng: np.random.Generator, word: str) -> str:
    if len(word) < 4:
        return word
    i = int(rng.integers(1, len(word) - 1))
    kind = rng.integers(3)
    if kind == 0:
        return word[:i] + word[i + 1 :]  # dropped letter
    if kind == 1:
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]  # swapped letters
    return word[:i] + word[i] + word[i:]  # doubled letter


def _noisy(rng: np.random.Generator, text: str, typo_rate: float) -> str:
    words = [(_typo(rng, w) if rng.random() < typo_rate else w) for w in text.split(" ")]
    text = " ".join(words)
    style = rng.integers(4)  # how the author types: as is, SHOUTING, Sentence case, lower
    if style == 1:
        return text.upper()
    if style == 2:
        return ". ".join(s.strip().capitalize() for s in text.split(".") if s.strip()) + "."
    return text


def _negatives(rng: np.random.Generator, symptoms: list[str]) -> list[str]:
    """Pertinent negatives, one to three symptoms per phrase: "denies cp, palpitations or syncope"."""
    phrases, rest = [], list(symptoms)
    while rest:
        k = int(rng.integers(1, 4))
        group, rest = rest[:k], rest[k:]
        listed = (
            group[0]
            if len(group) == 1
            else ", ".join(group[:-1]) + f" {_pick(rng, ['or', 'and', 'nor'])[0]} {group[-1]}"
        )
        phrases.append(_phrase(rng, NEGATIVE, listed))
    return phrases


def _ruled_out(rng: np.random.Generator, specialty: str, k: int) -> list[str]:
    """k symptoms of one specialty to deny: the differential the author ruled out."""
    return _pick(rng, SYMPTOMS[specialty], k)


def _normal_test(rng: np.random.Generator, specialty: str) -> str:
    return f"{_pick(rng, TESTS[specialty])[0]} {_pick(rng, ['unremarkable', 'normal', 'wnl', 'negative', 'nl'])[0]}"


def _vitals(rng: np.random.Generator) -> str:
    return (
        f"bp {rng.integers(100, 165)}/{rng.integers(60, 100)} hr {rng.integers(55, 115)} "
        f"rr {rng.integers(12, 26)} t {rng.integers(970, 1013) / 10:.1f} spo2 {rng.integers(88, 100)}%"
    )


def _note(rng: np.random.Generator, category: str) -> tuple[str, dict[str, list[str]]]:
    """A note of `category`, and what it plants of its own specialty, by kind (none if routine)."""
    age, sex = int(rng.integers(18, 95)), _pick(rng, ["m", "f", "male", "female", "yo m", "yo f"])[0]
    opening = f"{age} {sex}"
    sections: list[str] = []
    planted: dict[str, list[str]] = {}
    specialties = list(SYMPTOMS)
    if category == "routine":
        opening += (
            f" {_pick(rng, ['presents for', 'here for', 'seen for', 'scheduled'])[0]} {_pick(rng, ROUTINE_REASONS)[0]}."
        )
        if rng.random() < 0.4:  # a complaint no specialty would claim
            opening += f" {_phrase(rng, POSITIVE, _pick(rng, MINOR_COMPLAINTS)[0])}."
        else:
            opening += _pick(rng, [" no acute complaints.", " feels well.", " no new concerns.", ""])[0]
        first, second = _pick(rng, specialties, 2)
        denied = _ruled_out(rng, first, int(rng.integers(1, 4))) + _ruled_out(rng, second, int(rng.integers(0, 3)))
        if rng.random() < 0.5:
            sections.append(_phrase(rng, RESOLVED, _pick(rng, SYMPTOMS[second])[0]))
        if rng.random() < 0.5:
            sections.append(_normal_test(rng, first))
        sections.append("plan: " + ", ".join(_pick(rng, ROUTINE_PLANS + GENERIC_PLANS, int(rng.integers(1, 4)))))
    else:
        complaints = _pick(rng, SYMPTOMS[category], int(rng.integers(1, 3)))
        planted["complaint"] = complaints
        qualifier = f"{_pick(rng, QUALIFIERS)[0]} " if rng.random() < 0.3 else ""
        complaint = _phrase(rng, POSITIVE, qualifier + " and ".join(complaints))
        if rng.random() < 0.3:
            # Seen for something routine, the real problem comes up later in the note.
            opening += f" here for {_pick(rng, ROUTINE_REASONS)[0]}."
            sections.append(f"{_pick(rng, ['also', 'today also', 'incidentally', 'now'])[0]} {complaint}")
            sections.append(_pick(rng, ROUTINE_PLANS)[0])
        else:
            opening += f" {complaint}."
        other = _pick(rng, [c for c in specialties if c != category])[0]
        own_negated = [s for s in _pick(rng, SYMPTOMS[category], 2) if s not in complaints][: int(rng.integers(0, 2))]
        denied = _ruled_out(rng, other, int(rng.integers(1, 4))) + own_negated
        if rng.random() < 0.3:
            planted["finding"] = _pick(rng, FINDINGS[category])
            sections.append("exam: " + planted["finding"][0])
        if rng.random() < 0.5:
            sections.append(_normal_test(rng, other))
        # Most notes carry no test or plan of their own specialty: only the complaint tells.
        if rng.random() < 0.35:
            if rng.random() < 0.6:
                verb = _pick(rng, ["order", "check", "obtain", "will get"])[0]
                planted["test"] = _pick(rng, TESTS[category])
                sections.append(f"{verb} {planted['test'][0]}")
            planted["plan"] = _pick(rng, PLANS[category], int(rng.integers(1, 3)))
            sections.append("plan: " + ", ".join(planted["plan"]))
        else:
            sections.append("plan: " + ", ".join(_pick(rng, GENERIC_PLANS + ROUTINE_PLANS, int(rng.integers(1, 3)))))
    sections += _negatives(rng, [denied[i] for i in rng.permutation(len(denied))])
    if rng.random() < 0.7:
        sections.append("pmh: " + ", ".join(_pick(rng, HISTORY, int(rng.integers(1, 4)))))
    if rng.random() < 0.5:
        sections.append(_vitals(rng))
    sections += _pick(rng, FILLER, int(rng.integers(0, 3)))
    order = rng.permutation(len(sections))
    body = " ".join(s.rstrip(".") + "." for s in (sections[i] for i in order))
    return _noisy(rng, f"{opening} {body}", typo_rate=float(rng.uniform(0.0, 0.06))), planted


def generate(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """n notes and their labels (int64 indices into CATEGORIES), classes drawn uniformly."""
    texts, labels, _ = generate_planted(n, seed)
    return texts, labels


def generate_planted(n: int, seed: int) -> tuple[list[str], np.ndarray, list[dict[str, list[str]]]]:
    """`generate`'s notes and labels, and the phrases each plants for its specialty, by kind."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(len(CATEGORIES), size=n).astype(np.int64)
    notes = [_note(rng, CATEGORIES[y]) for y in labels]
    return [text for text, _ in notes], labels, [planted for _, planted in notes]
