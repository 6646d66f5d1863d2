"""Collaborative scores from the training interactions: implicit's alternating least squares.

``implicit`` (a maintained library of implicit-feedback factorisation with native kernels) fits
item factors on the training users' ratings; a held-out user is scored from their own history
alone (``recalculate_user``), so no held-out interaction ever reaches the fit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy.sparse import csr_matrix

from tools.catalog.films import Rating

logger = logging.getLogger(__name__)


class Collaborative:
    """Item factors fitted on interactions; scores for any history of items.

    Args:
        item_ids: The catalog's item ids; every score vector is aligned with them.
        ratings: Training interactions (the confidence of an interaction is its rating).
        factors: Latent dimensions.
        iterations: ALS sweeps.
        regularization: L2 weight of the factors.
        seed: Seed of the initial factors.
    """

    def __init__(
        self,
        item_ids: Sequence[str],
        ratings: Sequence[Rating],
        *,
        factors: int = 32,
        iterations: int = 15,
        regularization: float = 0.05,
        seed: int = 0,
    ) -> None:
        from implicit.als import AlternatingLeastSquares

        self.item_ids = list(item_ids)
        self.position = {item: n for n, item in enumerate(self.item_ids)}
        users = sorted({r.user for r in ratings})
        user_row = {user: n for n, user in enumerate(users)}
        known = [r for r in ratings if r.item in self.position]
        matrix = csr_matrix(
            (
                np.array([r.rating for r in known], dtype=np.float32),
                (
                    np.array([user_row[r.user] for r in known]),
                    np.array([self.position[r.item] for r in known]),
                ),
            ),
            shape=(len(users), len(self.item_ids)),
        )
        self.popularity = np.asarray((matrix > 0).sum(axis=0), dtype=np.float32).ravel()
        self.model = AlternatingLeastSquares(
            factors=factors,
            iterations=iterations,
            regularization=regularization,
            random_state=seed,
            num_threads=1,
        )
        self.model.fit(matrix, show_progress=False)
        logger.info("ALS fitted on %d interactions of %d users", len(known), len(users))

    def _row(self, history: Sequence[str]) -> csr_matrix:
        columns = sorted({self.position[i] for i in history if i in self.position})
        return csr_matrix(
            (np.ones(len(columns), dtype=np.float32), ([0] * len(columns), columns)),
            shape=(1, len(self.item_ids)),
        )

    def raw_scores(self, history: Sequence[str]) -> np.ndarray:
        """Predicted preference of a user with ``history`` for every item (unscaled).

        An empty history has no signal of its own: it gets the items' popularity.
        """
        row = self._row(history)
        if row.nnz == 0:
            return self.popularity.astype(np.float64)
        factors = np.asarray(self.model.recalculate_user(0, row)).ravel()
        return np.asarray(self.model.item_factors, dtype=np.float64) @ factors

    def scores(self, history: Sequence[str]) -> np.ndarray:
        """:meth:`raw_scores` scaled to [0, 1] over the catalog (1 is the best item)."""
        return _unit(self.raw_scores(history))

    def popular(self) -> np.ndarray:
        """Each item's number of training interactions, scaled to [0, 1]."""
        return _unit(self.popularity.astype(np.float64))


def _unit(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.zeros_like(values)
    return (values - low) / (high - low)
