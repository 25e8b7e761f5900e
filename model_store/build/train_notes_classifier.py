"""Train the notes_classifier reference model: a bidirectional GRU over synthetic clinical notes.

Run from the repository root:  .venv/bin/python -m model_store.build.train_notes_classifier

Writes model_store/notes_classifier/1/{model.onnx,vocab.json} and model_store/notes_classifier/model.toml
(sha256 and held-out macro-F1 included). Deterministic: same code, same torch, same bytes.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import numpy as np
import onnxruntime as ort
import torch
from sklearn.metrics import f1_score
from torch import nn

from model_store.build import common, guards, model_toml
from model_store.build import notes_corpus as corpus
from model_store.build.notes_corpus import HELDOUT_N, HELDOUT_SEED, TRAIN_N, TRAIN_SEED, VAL_N, VAL_SEED

EPOCHS = 8
MODEL_DIR = common.STORE / "notes_classifier"
ONNX_PATH, VOCAB_PATH = MODEL_DIR / "1" / "model.onnx", MODEL_DIR / "1" / "vocab.json"


def build_vocab(texts: list[str], min_count: int = 2) -> dict[str, int]:
    """Token -> id from 2 up (0 pad, 1 unknown), most frequent first, ties alphabetical for determinism."""
    counts = Counter(t for text in texts for t in corpus.tokenize(text))
    kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return {t: i + 2 for i, t in enumerate(kept)}


def pad(rows: list[list[int]]) -> torch.Tensor:
    """Right-pad with PAD_ID to the longest row, as the runtime does for a batch."""
    out = torch.full((len(rows), max(1, max(map(len, rows)))), corpus.PAD_ID, dtype=torch.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.int64)
    return out


class NotesGRU(nn.Module):
    """Embedding, a GRU each way, mean over the real tokens, linear, softmax.

    The backward direction is a forward GRU over each row reversed *within its own length*,
    not nn.GRU(bidirectional=True): that one would read a row's right padding before its
    words, and the padding a row gets depends on its batch-mates. This way every real
    position sees only real tokens, so a note scores the same alone or padded in a batch.
    """

    def __init__(self, vocab_size: int, dim: int = 64, hidden: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=corpus.PAD_ID)
        self.forward_gru = nn.GRU(dim, hidden, batch_first=True)
        self.backward_gru = nn.GRU(dim, hidden, batch_first=True)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(2 * hidden, len(corpus.CATEGORIES))

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        real = tokens != corpus.PAD_ID
        lengths = real.sum(dim=1, keepdim=True)
        positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0)
        reverse = torch.where(positions < lengths, lengths - 1 - positions, positions)
        ahead, _ = self.forward_gru(self.embed(tokens))
        behind, _ = self.backward_gru(self.embed(torch.gather(tokens, 1, reverse)))
        # Both directions keep their real positions first, so one mask pools both.
        mask = real.unsqueeze(-1).float()
        states = torch.cat([ahead, behind], dim=-1)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.head(self.dropout(pooled))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(tokens), dim=-1)


def predict(model: NotesGRU, rows: list[list[int]], batch: int = 256) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(pad(rows[i : i + batch])) for i in range(0, len(rows), batch)]).numpy()


def train(
    rows: list[list[int]], labels: np.ndarray, vocab_size: int, val_rows: list[list[int]], val_labels: np.ndarray
) -> NotesGRU:
    model = NotesGRU(vocab_size)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(TRAIN_SEED)
    y = torch.from_numpy(labels)
    best, best_state = -1.0, None
    for epoch in range(EPOCHS):
        model.train()
        for idx in torch.randperm(len(rows), generator=gen).split(32):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model.logits(pad([rows[i] for i in idx])), y[idx])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        f1 = f1_score(val_labels, predict(model, val_rows).argmax(axis=1), average="macro")
        print(f"  epoch {epoch + 1}: validation macro-F1 {f1:.4f}")
        if f1 > best:  # keep the epoch that generalised best, judged on the validation draw only
            best, best_state = f1, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model.eval()


def check_onnx(session: ort.InferenceSession, model: NotesGRU, vocab_size: int) -> None:
    """ONNX matches torch at every length 1..MAX_TOKENS, alone and right-padded in one batch."""
    rng = np.random.default_rng(0)
    rows = [rng.integers(1, vocab_size, size=n).tolist() for n in range(1, corpus.MAX_TOKENS + 1)]
    batched = session.run(["probabilities"], {"tokens": pad(rows).numpy()})[0]
    np.testing.assert_allclose(batched, predict(model, rows), atol=1e-5)
    for i in (0, 1, 16, 63, corpus.MAX_TOKENS - 1):
        alone = session.run(["probabilities"], {"tokens": pad([rows[i]]).numpy()})[0]
        np.testing.assert_allclose(alone[0], batched[i], atol=1e-5)


def write_model_toml(macro_f1: float, vocab_size: int) -> None:
    model_toml.write_model_toml(
        MODEL_DIR / "model.toml",
        [
            (None, {"name": "notes_classifier", "task": "text_classification", "max_batch_size": 32}),
            ("[version_policy]", {"policy": "latest"}),
            ("[[inputs]]", {"name": "tokens", "datatype": "INT64", "shape": [-1, -1]}),
            ("[[outputs]]", {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(corpus.CATEGORIES)]}),
            (
                "[preprocessing]",
                {
                    "tokenizer": "regex",
                    "pattern": corpus.PATTERN.pattern,
                    "lowercase": True,
                    "vocab": VOCAB_PATH.name,
                    "pad_id": corpus.PAD_ID,
                    "unk_id": corpus.UNK_ID,
                    "max_tokens": corpus.MAX_TOKENS,
                    "max_chars": 20000,
                },
                "Lowercase, take the regex's matches as tokens, map them through vocab.json (unknown -> unk_id),\n"
                "keep the first max_tokens, right-pad a batch with pad_id. max_chars bounds the text accepted.",
            ),
            ("[postprocessing]", {"labels": corpus.CATEGORIES}),
            ("[versions.1.sha256]", {path.name: common.sha256(path) for path in (ONNX_PATH, VOCAB_PATH)}),
            (
                "[card]",
                {
                    "notice": "demonstration model, not for clinical use",
                    "summary": (
                        f"Bidirectional GRU over word tokens ({vocab_size} known words) that routes "
                        "a short clinical note to cardiology, respiratory, neurology, "
                        "gastroenterology or routine care."
                    ),
                    "data": (
                        "Synthetic notes from templates (model_store/build/notes_corpus.py): synonyms, "
                        "abbreviations, typos, shuffled sections, and negated symptoms of other "
                        "specialties so that word presence alone misleads. "
                        f"Trained on {TRAIN_N} notes (seed {TRAIN_SEED}), epoch chosen on {VAL_N} "
                        f"(seed {VAL_SEED}), scored on {HELDOUT_N} (seed {HELDOUT_SEED})."
                    ),
                    "intended_use": (
                        "Demonstration of serving a text model with in-runtime tokenisation. "
                        "Not for triage or any clinical decision."
                    ),
                    "limitations": (
                        "demonstration model, not for clinical use. Trained only on "
                        "template-generated English notes: real notes are longer, messier and "
                        "use vocabulary it has never seen (unknown words are ignored). Reads "
                        f"only the first {corpus.MAX_TOKENS} tokens. One label per note, even "
                        "when a note has several problems."
                    ),
                },
            ),
            ("[card.metrics]", {"macro_f1": macro_f1, "heldout_n": HELDOUT_N}),
            *guards.notes_classifier(),
        ],
    )


def main() -> None:
    common.deterministic(TRAIN_SEED)
    started = time.process_time()
    train_texts, train_labels = corpus.generate(TRAIN_N, TRAIN_SEED)
    val_texts, val_labels = corpus.generate(VAL_N, VAL_SEED)
    heldout_texts, heldout_labels = corpus.generate(HELDOUT_N, HELDOUT_SEED)
    vocab = build_vocab(train_texts)
    vocab_size = len(vocab) + 2

    def encode(texts: list[str]) -> list[list[int]]:
        return [corpus.encode(t, vocab) for t in texts]

    model = train(encode(train_texts), train_labels, vocab_size, encode(val_texts), val_labels)

    common.export_onnx(
        model, pad([[2, 3, 4, 5]]), ONNX_PATH, names=("tokens", "probabilities"), input_axes={1: "length"}
    )
    VOCAB_PATH.write_text(json.dumps(vocab, indent=0) + "\n")
    session = common.onnx_session(ONNX_PATH)
    check_onnx(session, model, vocab_size)

    # Score the served graph on the held-out draw, batched as the runtime would batch it.
    rows = encode(heldout_texts)
    probs = np.concatenate(
        [session.run(["probabilities"], {"tokens": pad(rows[i : i + 32]).numpy()})[0] for i in range(0, len(rows), 32)]
    )
    macro_f1 = float(f1_score(heldout_labels, probs.argmax(axis=1), average="macro"))
    assert macro_f1 >= 0.9, f"held-out macro-F1 {macro_f1:.4f} below 0.9"
    write_model_toml(macro_f1, len(vocab))
    print(
        f"notes_classifier: held-out macro-F1 {macro_f1:.4f} on {HELDOUT_N}, vocab {len(vocab)}, "
        f"{time.process_time() - started:.1f}s CPU, {ONNX_PATH.stat().st_size} bytes"
    )


if __name__ == "__main__":
    main()
