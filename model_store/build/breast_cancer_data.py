"""The breast_mass data split, torch-free so that tests can re-score the served model on it."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split


def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The fixed stratified split: (X_train, X_test, y_train, y_test, feature_names), label 1 = malignant."""
    data = load_breast_cancer()
    # sklearn codes 0 = malignant, 1 = benign; the served model's positive class is index 1.
    y = (data.target == 0).astype(np.int64)
    X = data.data.astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    return X_train, X_test, y_train, y_test, list(data.feature_names)
