"""The data contract's names: one definition, read by the builder and the trainer alike."""

from __future__ import annotations

import subprocess
import sys

from freshlake import contract
from freshlake.config import load_config
from freshlake.features.examples import example_columns
from freshlake.training.batch import FeatureLayout
from tests.conftest import REPO


def test_the_trainer_reads_exactly_the_columns_the_builder_writes():
    config = load_config(REPO / "conf" / "local.yaml")
    spec = config.features.spec
    written = example_columns(config.labels, spec)
    layout = FeatureLayout.from_spec(spec, written)
    read = [*layout.categorical, *layout.numeric, *layout.text]
    assert sorted(read) == sorted(c for c in written if c.startswith("f_"))
    assert {layout.label, layout.weight, contract.SPLIT, contract.DT} <= set(written)
    numeric = [f.name for f in spec if f.kind == "numeric"]
    assert numeric and all(contract.missing_column(n) in layout.numeric for n in numeric)


def test_the_trainer_and_the_contract_import_without_pyspark():
    modules = [
        "freshlake.contract",
        "freshlake.training.trainer",
        "freshlake.training.worker",
        "freshlake.training.scoring",
        "freshlake.training.petastorm_loader",
    ]
    probe = f"import sys\nfor m in {modules!r}: __import__(m)\nprint('pyspark' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "False"
