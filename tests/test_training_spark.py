"""The Spark-cluster launcher: the same training function as barrier tasks via TorchDistributor."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

from freshlake.training.launch import make_job, run_on_spark
from freshlake.training.synthetic import SYNTHETIC_SPEC, synthetic_examples, write_synthetic_table


@pytest.mark.slow
def test_torch_distributor_trains_on_two_spark_tasks(spark, config, tmp_path):
    table = synthetic_examples(20_000, seed=1)
    write_synthetic_table(f"{config.lake.root}/examples", table)
    config = config.model_copy(
        update={
            "features": config.features.model_copy(update={"spec": SYNTHETIC_SPEC}),
            "training": config.training.model_copy(
                update={"epochs": 1, "batch_size": 256, "num_workers": 0}
            ),
        }
    )
    card = run_on_spark(make_job(config, tmp_path / "model"), num_processes=2)
    train_rows = table.filter(pc.equal(table.column("split"), "train")).num_rows
    assert card["training"]["world_size"] == 2 and card["training"]["backend"] == "gloo"
    assert card["data"]["rows_per_epoch"] == [train_rows]
    assert (tmp_path / "model" / "model.pt").exists()
