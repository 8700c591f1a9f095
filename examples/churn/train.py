"""Train the churn example: fitted transformers + an XGBoost model, as the churn seed tutorial does.

    python examples/churn/train.py [OUT_DIR]
        OUT_DIR/model/xgboost-model       the booster, in SageMaker's built-in XGBoost layout
        OUT_DIR/transformation.sav        {"obj_cols", "num_cols", "One_Hot", "scaler"}, pickled,
                                          exactly what the seed's Lambda loads from S3

The data is synthetic (made here, nothing is downloaded), with the seed's columns; churn grows with
customer-service calls, day minutes and the international plan, so the model has something to learn.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import xgboost
from sklearn.preprocessing import OneHotEncoder, StandardScaler

STATES = ["SC", "NY", "CA", "TX", "OH", "WA", "FL", "MA"]
OBJ_COLS = ["State", "Area Code", "Int'l Plan", "VMail Plan"]
NUM_COLS = [
    "Account Length", "VMail Message", "Day Mins", "Day Calls", "Day Charge", "Eve Mins", "Eve Calls",
    "Eve Charge", "Night Mins", "Night Calls", "Night Charge", "Intl Mins", "Intl Calls", "Intl Charge",
    "CustServ Calls",
]  # fmt: skip


def synthetic_customers(n: int, seed: int = 11) -> tuple[list[dict[str, object]], np.ndarray]:
    rng = np.random.default_rng(seed)
    rows, churned = [], []
    for _ in range(n):
        row: dict[str, object] = {
            "State": str(rng.choice(STATES)),
            "Account Length": int(rng.integers(1, 240)),
            "Area Code": int(rng.choice([408, 415, 510, 836])),
            "Phone": f"{rng.integers(100, 999)}-{rng.integers(1000, 9999)}",
            "Int'l Plan": str(rng.choice(["yes", "no"], p=[0.1, 0.9])),
            "VMail Plan": str(rng.choice(["yes", "no"], p=[0.3, 0.7])),
        }
        for column in NUM_COLS[1:]:
            row[column] = float(rng.gamma(2.0, 2.0)) if "Calls" not in column else int(rng.integers(0, 200))
        row["CustServ Calls"] = int(rng.poisson(1.5))
        score = 0.9 * row["CustServ Calls"] + 0.25 * float(row["Day Mins"]) + (2.0 if row["Int'l Plan"] == "yes" else 0)
        churned.append(score + rng.normal(0, 1) > 3.2)
        rows.append(row)
    return rows, np.array(churned, dtype=np.float32)


def fit(out: Path) -> None:
    rows, labels = synthetic_customers(3000)
    obj = [[row[c] for c in OBJ_COLS] for row in rows]
    num = [[row[c] for c in NUM_COLS] for row in rows]
    one_hot = OneHotEncoder(handle_unknown="ignore").fit(obj)
    scaler = StandardScaler().fit(num)
    features = np.hstack([one_hot.transform(obj).toarray(), scaler.transform(num)])
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "seed": 11, "nthread": 1},
        xgboost.DMatrix(features, label=labels),
        num_boost_round=40,
    )
    (out / "model").mkdir(parents=True, exist_ok=True)
    booster.save_model(str(out / "model" / "xgboost-model.json"))
    (out / "model" / "xgboost-model.json").rename(out / "model" / "xgboost-model")
    transformation = {"obj_cols": OBJ_COLS, "num_cols": NUM_COLS, "One_Hot": one_hot, "scaler": scaler}
    (out / "transformation.sav").write_bytes(pickle.dumps(transformation))
    churn_rate = float(labels.mean())
    print(f"trained on {len(rows)} customers ({churn_rate:.0%} churned); wrote {out}/model, {out}/transformation.sav")


if __name__ == "__main__":
    fit(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "build"))
