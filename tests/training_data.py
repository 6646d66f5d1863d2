"""Small training sets the training tests share."""

from __future__ import annotations


def word_preference_pairs(words: list[str]) -> list[dict]:
    """One DPO pair a word: "Is W a word?", a full answer chosen over a bare "No."."""
    return [
        {
            "prompt": [{"role": "user", "content": f"Is {w} a word?"}],
            "chosen": f"Yes, {w} is a word.",
            "rejected": "No.",
        }
        for w in words
    ]
