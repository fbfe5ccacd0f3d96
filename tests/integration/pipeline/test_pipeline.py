"""The stages in-process on small data: outputs, bad input safety, model behaviour, other tasks."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_template.cli import main
from mlops_template.core.bundle import REJECTED, VALIDATED, load_bundle, read_metadata
from mlops_template.core.config import load_params
from mlops_template.core.fsutil import sha256_file
from mlops_template.pipeline import evaluate, gate, prep, train
from tests.conftest import write_params

pytestmark = pytest.mark.integration


def run_all(params_path: Path = Path("params.yaml")) -> None:
    params = load_params(params_path)
    for stage in (prep, train, evaluate):
        stage.run(params)
    gate.run(params)


def test_pipeline_outputs_and_contract(trained: Path):
    metrics = json.loads((trained / "reports" / "metrics.json").read_text())
    quality = {"roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1", "log_loss"}
    assert set(metrics) == quality | {"membership_auc", "adversarial_accuracy", "median_flip_distance"}
    assert 0.4 < metrics["membership_auc"] < 0.6
    robustness = json.loads((trained / "reports" / "plots" / "robustness.json").read_text())
    assert robustness[0]["budget"] == 0.0 and robustness[-1]["accuracy"] <= robustness[0]["accuracy"]
    assert metrics["adversarial_accuracy"] <= robustness[0]["accuracy"]  # the attacked rows, before the attack
    assert 0.78 < metrics["roc_auc"] < 0.95  # learnable, but not trivially
    plots = {p.name for p in (trained / "reports" / "plots").iterdir()}
    assert plots == {"roc.json", "precision_recall.json", "confusion.json", "feature_importance.json",
                     "robustness.json"}  # fmt: skip
    meta = read_metadata(trained / "artifacts" / "model")
    assert meta.gate.verdict == VALIDATED and meta.metrics == metrics
    assert meta.task == "binary" and meta.classes == ["N", "Y"] and meta.positive_class == "Y"
    assert [t.metric for t in meta.gate.thresholds] == ["roc_auc", "f1", "log_loss", "membership_auc"]
    features = {f.name: f for f in meta.features}
    assert "loan_id" not in features and "loan_status" not in features
    area, income = features["property_area"], features["applicant_income"]
    assert area.type == "categorical" and area.categories == ["Rural", "Semiurban", "Urban"]
    assert income.type == "numeric" and income.min < income.median < income.max
    assert meta.numeric + meta.categorical == list(features) == list(meta.example)
    assert meta.training_data.sha256 == sha256_file(trained / "data" / "loans.csv")
    for name, digest in meta.files.items():
        assert sha256_file(trained / "artifacts" / "model" / name) == digest
    assert meta.params.train.estimator == "hist_gradient_boosting"
    assert meta.params.schema_.target == "loan_status"
    assert meta.versions["scikit-learn"] and "trained_at" not in meta.model_dump()  # reproducible: no time
    assert (trained / "reports" / "gate.md").read_text().startswith("### Metric gate: **VALIDATED**")
    importance = json.loads((trained / "reports" / "plots" / "feature_importance.json").read_text())
    assert {r["feature"]: r["importance"] for r in importance} == {n: f.importance for n, f in features.items()}


@pytest.fixture(scope="module")
def model(trained: Path):
    return load_bundle(trained / "artifacts" / "model")


@pytest.fixture(scope="module")
def test_rows(trained: Path) -> pd.DataFrame:
    return pd.read_parquet(trained / "artifacts" / "prepared" / "test.parquet")


def test_invariance_irrelevant_perturbation(model, test_rows):
    """Gender carries no signal in the data: swapping it flips almost no decisions."""
    x = test_rows[model.metadata.feature_names]
    swapped = x.assign(gender=x["gender"].map({"Male": "Female", "Female": "Male"}))
    flipped = (model.model.predict(x) != model.model.predict(swapped)).mean()
    assert flipped < 0.03


def test_directional_credit_history(model, test_rows):
    """A good credit history raises the approval probability."""
    x = test_rows[model.metadata.feature_names]
    positive = model.metadata.classes.index("Y")
    good = model.model.predict_proba(x.assign(credit_history=1.0))[:, positive]
    bad = model.model.predict_proba(x.assign(credit_history=0.0))[:, positive]
    assert (good >= bad).mean() > 0.95 and (good - bad).mean() > 0.2


def test_unknown_categories_and_missing_values_are_handled(model, test_rows):
    odd = test_rows[model.metadata.feature_names].head(5).assign(property_area="Mars", loan_amount=np.nan)
    assert np.isfinite(model.model.predict_proba(odd)).all()


@pytest.mark.parametrize(
    ("bad_csv", "message"),
    [
        ("", "the file is empty"),
        ("loan_id,applicant_income\nLP1,100\n", "not found; the file has"),
        ("loan_id,applicant_income,loan_status\nA,100,Y\nB,200,Y\nC,300,Y\n", "single class"),
        (None, "is numeric but has text"),
    ],
)
def test_bad_input_exit_2_and_previous_bundle_intact(trained, tmp_path, monkeypatch, capsys, bad_csv, message):
    tmp_path = Path(shutil.copytree(trained, tmp_path / "project"))
    monkeypatch.chdir(tmp_path)
    model_dir, prepared = tmp_path / "artifacts" / "model", tmp_path / "artifacts" / "prepared"
    before = {p.name: sha256_file(p) for d in (model_dir, prepared) for p in d.iterdir()}
    source = tmp_path / "data" / "loans.csv"
    if bad_csv is None:
        frame = pd.read_csv(source)
        frame["loan_amount"] = frame["loan_amount"].astype(object)
        frame.loc[7, "loan_amount"] = "twelve"
        frame.to_csv(source, index=False)
    else:
        source.write_text(bad_csv)
    assert main(["prep"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and str(source.relative_to(tmp_path)) in err
    after = {p.name: sha256_file(p) for d in (model_dir, prepared) for p in d.iterdir()}
    assert after == before
    assert not [p for p in (tmp_path / "artifacts").iterdir() if p.name.startswith(".")]


def test_gate_rejects_and_serving_refuses(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, gate={"thresholds": [{"metric": "roc_auc", "min": 0.999}]})
    from mlops_template.pipeline.sample import write_sample

    write_sample(tmp_path / "data" / "loans.csv", rows=2000, seed=4)
    params = load_params()
    for stage in (prep, train, evaluate):
        stage.run(params)
    assert main(["gate"]) == 1
    out = capsys.readouterr()
    assert "**REJECTED**" in out.out and "| roc_auc |" in out.out and "REJECTED (roc_auc)" in out.err
    assert read_metadata(tmp_path / "artifacts" / "model").verdict == REJECTED
    with pytest.raises(Exception, match="gate rejected this model"):
        load_bundle(tmp_path / "artifacts" / "model")


def regression_csv(path: Path, rows: int = 1500) -> None:
    """A dataset unlike the default: other columns, numeric target, text feature."""
    rng = np.random.default_rng(0)
    size = rng.uniform(30, 200, rows)
    rooms = rng.integers(1, 6, rows)
    city = rng.choice(["north", "south", "east"], rows)
    price = 2.5 * size + 15 * rooms + np.where(city == "north", 60, 0) + rng.normal(0, 10, rows)
    frame = pd.DataFrame(
        {"house": [f"h{i}" for i in range(rows)], "size_m2": size, "rooms": rooms, "city": city, "price": price}
    )
    frame.loc[::17, "size_m2"] = np.nan
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


@pytest.mark.parametrize("estimator", ["ridge", "random_forest", "hist_gradient_boosting"])
def test_other_dataset_regression_without_code_change(tmp_path, monkeypatch, estimator):
    monkeypatch.chdir(tmp_path)
    regression_csv(tmp_path / "data" / "houses.csv")
    write_params(
        tmp_path,
        data={"path": "data/houses.csv"},
        schema={"target": "price", "task": "regression", "positive_class": None, "drop": ["house"]},
        train={"estimator": estimator, "random_forest": {"n_estimators": 30}},
        gate={"thresholds": [{"metric": "r2", "min": 0.8}, {"metric": "mae", "max": 40}]},
    )
    run_all()
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert set(metrics) == {"rmse", "mae", "r2", "mape", "membership_auc", "mae_under_attack"} and metrics["r2"] > 0.8
    assert metrics["mae_under_attack"] >= metrics["mae"]
    plots = {p.name for p in (tmp_path / "reports" / "plots").iterdir()}
    assert {"predicted_vs_actual.json", "residuals.json", "feature_importance.json"} == plots
    meta = load_bundle(tmp_path / "artifacts" / "model").metadata
    assert meta.classes is None and meta.task == "regression"
    assert {f.name: f.type for f in meta.features} == {
        "size_m2": "numeric",
        "rooms": "numeric",
        "city": "categorical",
    }


def test_multiclass(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(900, 2))
    label = np.select([x[:, 0] > 0.5, x[:, 1] > 0], ["gold", "silver"], "bronze")
    path = tmp_path / "data" / "tiers.csv"
    path.parent.mkdir()
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "tier": label}).to_csv(path, index=False)
    write_params(
        tmp_path,
        data={"path": "data/tiers.csv"},
        schema={"target": "tier", "task": "multiclass", "positive_class": None, "drop": []},
        train={"estimator": "logistic_regression"},
        gate={"thresholds": [{"metric": "f1_macro", "min": 0.7}]},
    )
    run_all()
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.8 and "roc_auc_ovr_macro" in metrics
    assert load_bundle(tmp_path / "artifacts" / "model").metadata.classes == ["bronze", "gold", "silver"]
