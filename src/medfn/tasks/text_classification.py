"""Text classification: a free-text note -> categories, tokenised in-process from model.toml.

The tokenizer is described by `[preprocessing]` (a regex, lowercasing, a vocabulary file
shipped beside the graph), so no tokenizer is downloaded and none is written in Python per
model.

`explain` weighs each token by leave-one-out: the note, and one copy per token with that token
replaced by the unknown-word id, run as one batch; a token's weight is how much its replacement
lowers the probability of the answered class. Replaced, not deleted or padded: a model trained
through this tokenizer learned the unknown id from its own notes (for the reference model, every
word seen once in training, a typo say: 0.4% of its tokens, in 15% of its notes), so "this word
unreadable" is a note it knows; each copy keeps the note's length and positions, differing from
it in that word alone; and the pad id is no neutral word: the reference model only ever saw pads
after a note's end and counts them to find that end (where its backward reading starts), so a
pad inside a note would misplace the reading rather than blank a word. Negation is shown as the
model handles it, not as a reader would: in "denies chest pain" the weights say whether the
model leans on "denies", "chest" and "pain", whatever a clinician would make of them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from medfn.errors import BadRequest, UnprocessableInput
from medfn.serving.model import Explanation, Model, Payload, Prediction
from medfn.tasks.guards import Guards
from medfn.tasks.labels import activated, label_problems
from medfn.tasks.options import explain_problems
from medfn.tasks.records import class_drops, explain_batch_problems, first_row, run_variants, weight


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
        problems += explain_problems(self.config.task, self.config.explain) or explain_batch_problems(self)
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

    def words(self, text: str) -> list[str]:
        """The tokens the model reads, as text: lowercased (as configured), the first max_tokens."""
        prep = self.config.preprocessing
        if prep.get("lowercase", True):
            text = text.lower()
        return list(self.pattern.findall(text)[: int(prep.get("max_tokens", 512))])

    def tokens(self, text: str) -> list[int]:
        unk = int(self.config.preprocessing.get("unk_id", 1))
        return [self.vocab.get(token, unk) for token in self.words(text)]

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

    def explain(self, payload: Payload) -> Explanation:
        """The prediction, and every token's weight in text order: `{"token", "weight", "known"}`.

        A word the vocabulary lacks already reads as unknown, so its weight is 0 by construction
        (`known` false says so): not that the model ignores it, only that this method cannot tell.
        """
        inputs, context = self.prepare(payload)
        ids = inputs[self.config.inputs[0].name][0]
        unknown = int(self.config.preprocessing.get("unk_id", 1))
        variants = np.repeat(ids[None, :], len(ids) + 1, axis=0)  # the note, then one copy per token
        variants[np.arange(1, len(ids) + 1), np.arange(len(ids))] = unknown
        outputs, inference_ms, runs = run_variants(self, variants)
        prediction = self.finish(first_row(outputs), context, payload, inference_ms)
        post = self.config.postprocessing
        target, weights = class_drops(outputs[post.get("output", self.config.outputs[0].name)], post)
        words = self.words(self.text_of(payload))
        tokens = [
            {"token": word, "weight": weight(w), "known": bool(token != unknown)}
            for word, token, w in zip(words, ids.tolist(), weights, strict=True)
        ]
        details = {"target": target, "replacement": "unknown word", "tokens": tokens, "variants": len(ids)}
        return Explanation(prediction, "leave-one-out", details | {"runs": runs})
