"""Experiment configs by name: what turns a key of the `experiments` partitions into the
config its training-side steps run with.

The code location's own config (TRAINFLOW_CONFIG) is read from its file, as before, so
editing it and materializing trains the edit. Every other experiment is the copy that
`trainflow experiments add FILE` (or a search, for its trials and candidate) stored under
`<lake>/_experiments/<name>.yaml`: a step on any machine, a pod on Kubernetes included,
reads the same bytes, and re-adding the file is how an experiment changes. What a run
trained with is recorded in its manifest, so `trainflow reproduce` never needs the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from trainflow.config import ConfigError, ExperimentConfig, load_config
from trainflow.lake.object_store import ObjectStore

STORE_FOLDER = "_experiments"


@dataclass(frozen=True)
class ExperimentStore:
    store: ObjectStore  # <lake>/_experiments
    own_config: Path  # TRAINFLOW_CONFIG

    def own(self) -> ExperimentConfig:
        return load_config(self.own_config)

    def add_file(self, path: Path) -> ExperimentConfig:
        """Validate the config file and store it under its name, as written (comments kept)."""
        config = load_config(path)
        self.store.put(f"{config.name}.yaml", path.read_bytes(), "application/yaml")
        return config

    def add(self, config: ExperimentConfig) -> None:
        """Store a config made in code (a search's trial or candidate)."""
        text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
        self.store.put(f"{config.name}.yaml", text.encode(), "application/yaml")

    def load(self, name: str) -> ExperimentConfig:
        """The config of experiment `name`: the code location's own, or the stored copy."""
        own = self.own()
        if name == own.name:
            return own
        key = f"{name}.yaml"
        if not self.store.exists(key):
            raise ConfigError(
                f"experiment {name!r} is not in {self.store.root}: add its config with "
                f"`trainflow experiments add FILE` (the code location's own is {own.name!r})"
            )
        config = ExperimentConfig.model_validate(yaml.safe_load(self.store.get(key)))
        if config.name != name:
            raise ConfigError(
                f"{self.store.uri(key)} holds experiment {config.name!r}, not {name!r}"
            )
        return config
