"""Preprocessing built from the resolved schema: impute, scale, one-hot (unknown categories ignored)."""

from __future__ import annotations

from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops_template.core.tabular import MISSING_CATEGORY
from mlops_template.pipeline.data import Schema


def preprocessor(schema: Schema) -> ColumnTransformer:
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    return ColumnTransformer(
        [("numeric", numeric, schema.numeric), ("categorical", categorical, schema.categorical)],
        remainder="drop",
        verbose_feature_names_out=False,
    )


def model_pipeline(schema: Schema, estimator: BaseEstimator) -> Pipeline:
    return Pipeline([("features", preprocessor(schema)), ("model", estimator)])
