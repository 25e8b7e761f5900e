"""Text classification: a free-text note -> categories, tokenised in-process from model.toml.

The tokenizer is described by `[preprocessing]` (a regex, lowercasing, a vocabulary file
shipped beside the graph), so no tokenizer is downloaded and none is written in Python per
model.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from medfn.errors import BadRequest, UnprocessableInput
from medfn.serving.model import Model, Payload, Prediction
from medfn.tasks.guards import Guards
from medfn.tasks.labels import activated, label_problems


class TextClassifier(Model):
    """Body: the note as `text/plain` (UTF-8), or `{"text": "..."}` as JSON."""

    media_types = frozenset({"text/plain", "application/json"})
    details_key = "text"

    def load_task(self, artifacts: dict[str, Path]) -> None:
        prep = self.config.preprocessing
        self.vocab: dict[str, int] = orjson.loads(artifacts[prep.get("vocab", "vocab.json")].read_bytes())
        self.pattern = re.compile(prep.get("pattern", r"\w+"))
        self.largest_id = max([*self.vocab.values(), int(prep.get("unk_id", 1))])

    def task_problems(self) -> list[str]:
        """The labels, and one run with the vocabulary's largest id: an embedding with fewer rows refuses it."""
        problems = label_problems(self) + Guards(self.config.guards).problems()
        probe = {self.config.inputs[0].name: np.asarray([[self.largest_id]], dtype=np.int64)}
        try:
            self.execute(probe, [self.config.outputs[0].name])
        except BadRequest:
            problems.append(
                f"the graph refuses token id {self.largest_id}: the vocabulary is larger than the embedding"
            )
        return problems

    def request_body(self) -> dict[str, Any] | None:
        note = {"type": "string", "minLength": 1, "maxLength": int(self.config.preprocessing.get("max_chars", 20_000))}
        as_json = {"type": "object", "required": ["text"], "properties": {"text": note}}
        return {"required": True, "content": {"text/plain": {"schema": note}, "application/json": {"schema": as_json}}}

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        """Raw token ids (the Open Inference Protocol) must be ids the vocabulary could give."""
        super().check_inputs(inputs)
        ids = inputs[self.config.inputs[0].name]
        most = int(self.config.preprocessing.get("max_tokens", 512))
        if ids.ndim > 1 and ids.shape[-1] > most:  # the task route keeps the first max_tokens; raw ids must fit it
            raise BadRequest(f"at most {most} tokens a note (max_tokens); got {ids.shape[-1]}")
        if ids.size and (ids.min() < 0 or ids.max() > self.largest_id):
            raise BadRequest(f"token ids must lie in 0..{self.largest_id}, the vocabulary's ids")

    def text_of(self, payload: Payload) -> str:
        try:
            text = payload.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnprocessableInput("note is not valid UTF-8") from exc
        if payload.media_type == "application/json":
            try:
                document = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise UnprocessableInput("body is not valid JSON") from exc
            note = document.get("text") if isinstance(document, dict) else None
            if not isinstance(note, str):
                raise UnprocessableInput('JSON body needs "text": the note as a string')
            return note
        return text

    def tokens(self, text: str) -> list[int]:
        prep = self.config.preprocessing
        if prep.get("lowercase", True):
            text = text.lower()
        unk = int(prep.get("unk_id", 1))
        ids = [self.vocab.get(token, unk) for token in self.pattern.findall(text)]
        return ids[: int(prep.get("max_tokens", 512))]

    def preprocess(self, payload: Payload) -> tuple[dict[str, np.ndarray], Any]:
        text = self.text_of(payload)
        limit = int(self.config.preprocessing.get("max_chars", 20_000))
        if not text.strip():
            raise UnprocessableInput("note is empty")
        if len(text) > limit:
            raise UnprocessableInput(f"note is {len(text)} characters, over the limit of {limit}")
        ids = self.tokens(text)
        if not ids:
            raise UnprocessableInput("note has no words")
        unknown = int(self.config.preprocessing.get("unk_id", 1))
        warnings = Guards(self.config.guards).vocabulary(sum(i != unknown for i in ids), len(ids))
        return {self.config.inputs[0].name: np.asarray([ids], dtype=np.int64)}, (len(ids), warnings)

    def postprocess(self, outputs: dict[str, np.ndarray], context: Any, payload: Payload) -> Prediction:
        post = self.config.postprocessing
        probabilities = outputs[post.get("output", self.config.outputs[0].name)][0]
        tokens, warnings = context
        label, by_label = activated(probabilities, post)
        return Prediction(label, by_label, details={"tokens": tokens}, warnings=warnings)
