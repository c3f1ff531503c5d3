"""Find duplicate flows while streaming the raw files: 64-bit row hashes and sets of seen rows.

Two flows are duplicates when their feature values are equal, either as read
(mode ``exact``, float64) or after the cast to float32 that every model input
goes through (mode ``float32``). Rows are compared through a 64-bit hash of
their values, so memory keeps 8 bytes per distinct flow instead of the rows.

NOTE: a hash collision makes two different flows look equal, and the second
one is then dropped as a duplicate. Treating the hashes as uniformly random,
the probability of any collision among n distinct flows is about n**2 / 2**65:
2e-6 for the 8.8 million flows of the full release.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DUPLICATE_MODES: tuple[str, ...] = ("none", "exact", "float32")

# Constants of the hash: an arbitrary start value, the 64-bit golden-ratio multiplier,
# and the two multipliers of the SplitMix64 finaliser.
_SEED = np.uint64(0x243F6A8885A308D3)
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_FINAL_1 = np.uint64(0xBF58476D1CE4E5B9)
_FINAL_2 = np.uint64(0x94D049BB133111EB)


class RowHasher:
    """Hash the rows of a table one column at a time, into one uint64 per row.

    Feed every column with :meth:`update` (float32 or float64 arrays of the
    same length, in the same column order for every file), then call
    :meth:`digest`. ``-0.0`` hashes like ``0.0`` and every NaN like every
    other NaN, so the hash follows value equality with NaN equal to NaN.
    """

    def __init__(self, n_rows: int) -> None:
        self._hash = np.full(n_rows, _SEED, dtype=np.uint64)
        self._scratch = np.empty(n_rows, dtype=np.uint64)

    def update(self, values: np.ndarray) -> None:
        # Adding +0.0 turns -0.0 into +0.0 and leaves every other value as it is.
        canonical = values + values.dtype.type(0)
        nan = np.isnan(canonical)
        if nan.any():
            canonical[nan] = np.nan
        words = canonical.view(np.uint32 if canonical.dtype == np.float32 else np.uint64)

        # One multiply-xorshift round per column; uint64 arithmetic wraps modulo 2**64.
        np.bitwise_xor(self._hash, words, out=self._hash, casting="unsafe")
        np.multiply(self._hash, _MULTIPLIER, out=self._hash)
        np.right_shift(self._hash, np.uint64(29), out=self._scratch)
        np.bitwise_xor(self._hash, self._scratch, out=self._hash)

    def digest(self) -> np.ndarray:
        """Return the row hashes, finished with the SplitMix64 finaliser (uint64, one per row)."""
        result = self._hash.copy()
        for shift, multiplier in ((30, _FINAL_1), (27, _FINAL_2)):
            np.bitwise_xor(result, result >> np.uint64(shift), out=result)
            np.multiply(result, multiplier, out=result)
        np.bitwise_xor(result, result >> np.uint64(31), out=result)
        return result


def _contains(sorted_hashes: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Tell, for each of ``hashes``, whether it is in the sorted array ``sorted_hashes``."""
    if sorted_hashes.size == 0:
        return np.zeros(hashes.shape, dtype=bool)
    positions = np.searchsorted(sorted_hashes, hashes)
    positions[positions == sorted_hashes.size] = 0
    return sorted_hashes[positions] == hashes


class SeenRows:
    """The distinct rows kept so far, per split and class, as sorted arrays of row hashes.

    Memory is 8 bytes per kept flow, plus one copy of the train hashes once
    :meth:`count_in_train` is first called.
    """

    def __init__(self) -> None:
        self._hashes: dict[tuple[str, str], np.ndarray] = {}
        self._train: np.ndarray | None = None

    def keep_first(self, split: str, class_name: str, hashes: np.ndarray) -> np.ndarray:
        """Return a boolean mask of the rows to keep: the first occurrence of each row in this split and class.

        A row is a duplicate when an earlier row of the same file, or a kept row
        of an earlier file of the same split and class, has the same hash.
        """
        # pandas finds first occurrences with a hash table, several times faster than np.unique's stable sort.
        first_rows = np.flatnonzero(~pd.Series(hashes).duplicated(keep="first").to_numpy())
        distinct = hashes[first_rows]
        order = np.argsort(distinct)
        distinct_sorted = distinct[order]

        key = (split, class_name)
        seen = self._hashes.get(key, np.empty(0, dtype=np.uint64))
        # Sorted keys make numpy's binary search walk the seen array forwards, which is much faster.
        seen_sorted = _contains(seen, distinct_sorted)
        is_seen = np.empty(distinct.shape, dtype=bool)
        is_seen[order] = seen_sorted

        keep = np.zeros(hashes.shape, dtype=bool)
        keep[first_rows[~is_seen]] = True

        # Both arrays are sorted, so the stable sort (a timsort for uint64) only merges two runs.
        merged = np.concatenate([seen, distinct_sorted[~seen_sorted]])
        merged.sort(kind="stable")
        self._hashes[key] = merged
        return keep

    def count_in_train(self, hashes: np.ndarray) -> int:
        """Count the rows whose hash equals that of a kept train row of any class.

        Call it only after every train file went through :meth:`keep_first`: the
        train hashes are gathered on the first call.
        """
        if self._train is None:
            train = [hashes for (split, _), hashes in self._hashes.items() if split == "train"]
            # A hash kept in several classes appears more than once, which the search does not mind.
            self._train = np.sort(np.concatenate(train)) if train else np.empty(0, dtype=np.uint64)
        # Sorted keys, as above.
        return int(_contains(self._train, np.sort(hashes)).sum())
