"""The pages' tables from the API's JSON: the gate judged per threshold, drift rows flagged, importance sorted."""

from __future__ import annotations

from mlops_template.ui.form import EXAMPLE, TYPICAL, flag_sentences, inputs, probability_rows
from mlops_template.ui.tables import (
    UNKNOWN_COMMIT_TIME,
    committed_sentence,
    comparison_table,
    drift_table,
    gate_table,
    importance_table,
    metric_table,
    quality_table,
)

MODEL = {
    "task": "binary",
    "classes": ["N", "Y"],
    "metrics": {"roc_auc": 0.85, "log_loss": 0.6, "accuracy": 0.8},
    "gate": {"thresholds": [{"metric": "roc_auc", "min": 0.8}, {"metric": "log_loss", "max": 0.5}]},
    "features": [
        {"name": "income", "type": "numeric", "min": 10.0, "max": 500.0, "median": 120.5, "integer": True,
         "importance": 0.02},
        {"name": "rate", "type": "numeric", "min": 0.5, "max": 9.5, "median": 3.25, "missing_rate": 0.1,
         "importance": 0.3},
        {"name": "area", "type": "categorical", "categories": ["rural", "urban"]},
    ],
    "example": {"income": 300.0, "rate": None, "area": "urban"},
}  # fmt: skip


def test_gate_table_judges_each_threshold_then_lists_the_other_metrics():
    table = gate_table(MODEL)
    assert table.to_dict("records") == [
        {"metric": "roc_auc", "value": 0.85, "gate": "≥ 0.8", "passed": "yes"},
        {"metric": "log_loss", "value": 0.6, "gate": "≤ 0.5", "passed": "NO"},
        {"metric": "accuracy", "value": 0.8, "gate": "", "passed": ""},
    ]
    assert gate_table({**MODEL, "gate": {}}).empty and len(metric_table(MODEL)) == 3


def test_importance_sorted_and_absent_when_not_recorded():
    assert importance_table(MODEL)["feature"].tolist() == ["rate", "income"]
    assert importance_table({"features": [{"name": "a"}]}).empty


def test_drift_table_lists_features_and_outputs_with_their_verdict():
    report = {"features": [{"name": "income", "drifted": True, "psi": 0.4}],
              "outputs": [{"name": "prediction", "drifted": False}]}  # fmt: skip
    table = drift_table(report)
    assert table[["name", "kind", "drifted"]].values.tolist() == [["income", "feature", True],
                                                                  ["prediction", "prediction", False]]  # fmt: skip
    assert drift_table({}).empty


def test_quality_table_one_row_per_variant():
    experiment = {"live_quality": {"served": {"feedback": 3, "accuracy": 1.0}, "champion": {"feedback": 3}}}
    assert quality_table(experiment)["variant"].tolist() == ["served", "champion"]


def test_form_inputs_from_the_example_or_typical_values():
    example = inputs(MODEL, EXAMPLE)
    assert [(i.name, i.value) for i in example] == [("income", 300), ("rate", None), ("area", "urban")]
    income = example[0]
    assert (income.low, income.high, income.integer) == (10, 500, True) and isinstance(income.low, int)
    assert "training range 10 to 500" in income.help
    typical = inputs(MODEL, TYPICAL)
    assert [i.value for i in typical] == [120, 3.25, "rural"]  # median (whole for integer features), 1st category
    assert inputs({**MODEL, "example": None}, EXAMPLE)[1].value == 3.25  # no example: typical values


def test_flags_and_probabilities_in_words():
    item = {"prediction": "Y", "probabilities": {"N": 0.2, "Y": 0.8}, "out_of_range": ["income"],
            "unknown_categories": ["area"]}  # fmt: skip
    assert flag_sentences(item, MODEL) == [
        "income is outside the range seen in training (10 to 500): treat this prediction with care.",
        "area has a category never seen in training: the model treats it as unknown.",
    ]
    assert probability_rows(item) == [{"class": "N", "probability": 0.2}, {"class": "Y", "probability": 0.8}]
    assert probability_rows({"prediction": 3.0}) == []


def test_comparison_table_one_row_per_challenger_from_the_experiments_own_stats():
    """Three challengers against the champion (the service's own Experiment, Bonferroni alpha 0.05 / 3): one row
    each with its feedback, rates, alpha, p-value and decision; the clear winner is decided, the others not yet.
    ("worse" gets no feedback at all.)"""
    from mlops_template.core.config import ExperimentConfig
    from mlops_template.monitoring.experiment import CHAMPION, Experiment

    experiment = Experiment(ExperimentConfig(mode="shadow", test="sequential", min_samples=20),
                            challengers=("better", "same", "worse"))  # fmt: skip
    for i in range(300):
        experiment.observe(CHAMPION, i % 2 == 0)  # 50 %
        experiment.observe("better", i % 10 != 0)  # 90 %
        experiment.observe("same", i % 2 == 1)  # 50 %
    stats = experiment.stats()
    table = comparison_table(stats).set_index("challenger")
    assert table.index.tolist() == ["better", "same", "worse"]
    assert table["alpha"].tolist() == ["0.0167"] * 3  # 0.05 / 3
    assert table.loc["better", "feedback (champion / challenger)"] == "300 / 300"
    assert table.loc["worse", "feedback (champion / challenger)"] == "300 / 0"
    assert table.loc["better", "decision"] == stats["comparisons"]["better"]["decision"] == "promote challenger"
    assert float(table.loc["better", "p-value"]) < 0.0167
    assert table.loc["better", "challenger rate"] == "0.9" and table.loc["better", "champion rate"] == "0.5"
    assert table.loc["same", "decision"] == "not enough data" and float(table.loc["same", "p-value"]) > 0.0167
    assert table.loc["worse", "p-value"] == "—"  # no feedback yet: the test has computed none
    for name in table.index:
        assert table.loc[name, "reason"] == stats["comparisons"][name]["reason"]
    assert comparison_table({"comparisons": {}}).empty and comparison_table({}).empty


def test_committed_sentence_says_what_the_time_is_or_that_it_is_unknown():
    sentence = committed_sentence({"model_committed_at": "2026-05-29T22:26:40+02:00"})
    assert sentence.startswith("2026-05-29 20:26:40 UTC, when a commit first recorded this bundle in dvc.lock")
    assert "trained before" in sentence
    assert committed_sentence({"model_committed_at": None}) == UNKNOWN_COMMIT_TIME
    assert committed_sentence({}) == UNKNOWN_COMMIT_TIME and "MODEL_COMMITTED_AT" in UNKNOWN_COMMIT_TIME
