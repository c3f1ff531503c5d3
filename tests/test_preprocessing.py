"""Tests for iomt_ids.data.preprocessing.FeaturePreprocessor on small hand-made arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from iomt_ids.data.preprocessing import FeaturePreprocessor

INF = np.inf
NAN = np.nan
COLUMNS = ["Rate", "Std"]

# Rate has finite values 1, 3, 5 plus +inf, -inf and NaN. Std is finite throughout.
TRAIN = np.array(
    [
        [1.0, 2.0],
        [5.0, 4.0],
        [3.0, 6.0],
        [INF, 8.0],
        [-INF, 10.0],
        [NAN, 12.0],
    ],
    dtype=np.float32,
)


@pytest.fixture
def preprocessor():
    return FeaturePreprocessor.fit(TRAIN, COLUMNS)


def test_fit_fill_values(preprocessor):
    assert preprocessor.pos_inf_fill[0] == 5.0
    assert preprocessor.neg_inf_fill[0] == 1.0
    assert preprocessor.nan_fill[0] == 3.0


def test_clean_replaces_non_finite(preprocessor):
    cleaned = preprocessor.clean(TRAIN)

    np.testing.assert_array_equal(cleaned[:, 0], [1.0, 5.0, 3.0, 5.0, 1.0, 3.0])
    np.testing.assert_array_equal(cleaned[:, 1], TRAIN[:, 1])


def test_clean_keeps_input(preprocessor):
    original = TRAIN.copy()

    preprocessor.clean(TRAIN)

    np.testing.assert_array_equal(TRAIN, original)


def test_fit_statistics_after_cleaning(preprocessor):
    cleaned_rate = np.array([1.0, 5.0, 3.0, 5.0, 1.0, 3.0])

    assert preprocessor.mean[0] == pytest.approx(cleaned_rate.mean())
    assert preprocessor.scale[0] == pytest.approx(cleaned_rate.std())


def test_transform_standardises_train():
    rng = np.random.default_rng(0)
    train = rng.normal(loc=[10.0, -300.0, 0.001], scale=[3.0, 50.0, 0.0002], size=(500, 3)).astype(np.float32)
    preprocessor = FeaturePreprocessor.fit(train, ["a", "b", "c"])

    scaled = preprocessor.transform(train)

    np.testing.assert_allclose(scaled.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(scaled.std(axis=0), 1.0, atol=1e-4)


def test_transform_returns_float32(preprocessor):
    assert preprocessor.transform(TRAIN.astype(np.float64)).dtype == np.float32


def test_transform_output_finite(preprocessor):
    assert np.isfinite(preprocessor.transform(TRAIN)).all()


def test_constant_column_centred():
    train = np.array([[7.0, 1.0], [7.0, 2.0], [7.0, 3.0]], dtype=np.float32)
    preprocessor = FeaturePreprocessor.fit(train, COLUMNS)

    scaled_train = preprocessor.transform(train)
    scaled_new = preprocessor.transform(np.array([[9.0, 2.0]], dtype=np.float32))

    assert preprocessor.scale[0] == 1.0
    np.testing.assert_array_equal(scaled_train[:, 0], [0.0, 0.0, 0.0])
    assert scaled_new[0, 0] == 2.0


def test_no_finite_column_gets_zero():
    train = np.array([[NAN, 1.0], [INF, 2.0], [-INF, 3.0]], dtype=np.float32)
    preprocessor = FeaturePreprocessor.fit(train, COLUMNS)

    scaled = preprocessor.transform(train)

    assert preprocessor.pos_inf_fill[0] == 0.0
    assert preprocessor.neg_inf_fill[0] == 0.0
    assert preprocessor.nan_fill[0] == 0.0
    np.testing.assert_array_equal(scaled[:, 0], [0.0, 0.0, 0.0])


def test_transform_uses_training_statistics(preprocessor):
    new = np.array([[100.0, 2.0], [INF, 40.0], [-INF, 7.0], [NAN, -1.0]], dtype=np.float32)
    train_rate = np.array([1.0, 5.0, 3.0, 5.0, 1.0, 3.0])
    train_std = TRAIN[:, 1].astype(np.float64)
    # inf, -inf and NaN take the training max, min and median, not the new rows' values.
    expected_rate = (np.array([100.0, 5.0, 1.0, 3.0]) - train_rate.mean()) / train_rate.std()
    expected_std = (new[:, 1] - train_std.mean()) / train_std.std()

    scaled = preprocessor.transform(new)

    np.testing.assert_allclose(scaled[:, 0], expected_rate, rtol=1e-6)
    np.testing.assert_allclose(scaled[:, 1], expected_std, rtol=1e-6)


def test_transform_does_not_refit(preprocessor):
    before = preprocessor.to_dict()

    preprocessor.transform(np.array([[1e6, -1e6]], dtype=np.float32))

    assert preprocessor.to_dict() == before


def test_round_trip_through_json(preprocessor):
    new = np.array([[100.0, 2.0], [INF, 40.0], [-INF, 7.0], [NAN, -1.0]], dtype=np.float32)

    restored = FeaturePreprocessor.from_dict(json.loads(json.dumps(preprocessor.to_dict())))

    assert restored.columns == COLUMNS
    np.testing.assert_array_equal(restored.transform(new), preprocessor.transform(new))


@pytest.mark.parametrize(
    "features",
    [np.zeros((4, 3), dtype=np.float32), np.zeros((4, 1), dtype=np.float32), np.zeros(2, dtype=np.float32)],
    ids=["three_columns", "one_column", "one_dimension"],
)
def test_transform_wrong_shape(preprocessor, features):
    with pytest.raises(ValueError, match=r"expected a \(n_flows, 2\) feature array"):
        preprocessor.transform(features)


@pytest.mark.parametrize(
    "features",
    [np.zeros((4, 3), dtype=np.float32), np.zeros(2, dtype=np.float32)],
    ids=["three_columns", "one_dimension"],
)
def test_fit_wrong_shape(features):
    with pytest.raises(ValueError, match=r"expected a \(n_flows, 2\) feature array"):
        FeaturePreprocessor.fit(features, COLUMNS)


def test_fit_zero_rows():
    with pytest.raises(ValueError, match="zero training flows"):
        FeaturePreprocessor.fit(np.zeros((0, 2), dtype=np.float32), COLUMNS)
