"""A PyTorch Lightning MLP: the second model family (`model.family: mlp`).

Inputs: the config's numeric features, standardised with the mean and standard deviation of
the TRAINING window only, plus categorical embeddings for carrier, origin and dest
(vocabularies from the training window too; index 0 is "unseen or missing"). A missing
numeric value is imputed with its training mean (0 after standardising) and flagged by its
own 0/1 indicator input, so the network can tell "average" from "unknown".

torch is imported lazily inside the training function: importing trainflow, or scoring a
stored MLP, never needs it. Scoring runs a numpy forward pass over the stored weights
(`MlpModel.predict`), so the evaluation, the champion comparison, `trainflow reproduce` and
the MLflow pyfunc all score with the same code and without torch.

Sources of nondeterminism and how each is pinned:
- random draws (initial weights, dropout masks, shuffling): `seed_everything(seed,
  workers=True)` seeds Python, numpy and torch; the DataLoader shuffles with its own
  generator seeded from the config's seed; there are no worker processes (num_workers=0);
- thread scheduling: float sums in torch's CPU kernels depend on how work is split across
  threads, so `torch.set_num_threads` is fixed from the config (model.num_threads);
- kernel choice: the Trainer runs with `deterministic=True`
  (torch.use_deterministic_algorithms), CPU only; a GPU is never used (cuDNN/cuBLAS kernels
  are not bit-stable across devices or library builds);
- input row order: callers pass rows sorted by flight_id;
- REMAINING: the weights are bit-identical only for the same torch build, CPU instruction
  set (oneDNN/MKL pick kernels by CPU features, e.g. AVX-512 vs AVX2) and thread count; the
  numpy forward pass's matmul goes through BLAS, whose thread count can change the last bits
  of a score (not the weights); pin OPENBLAS_NUM_THREADS to rule it out.
- side effect: `deterministic=True` turns on torch.use_deterministic_algorithms for the
  whole process (Lightning does not turn it off after `fit`); the torch thread count is put
  back after training.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from trainflow.config import MlpParams

CATEGORICAL_FEATURES = ("carrier", "origin", "dest")
FORMAT = "trainflow-mlp/1"
INSTALL_HINT = "make install-mlp (pip install -e '.[torch]')"
# Recorded in an MLP run's manifest beside the usual libraries: the weights depend on them.
MLP_LIBRARIES = ("torch", "pytorch-lightning")


class MlpUnavailableError(RuntimeError):
    """family=mlp was asked for, but torch / pytorch-lightning are not installed."""


@dataclass(frozen=True)
class Preprocessor:
    """Standardisation and vocabularies, fitted on the training window only."""

    numeric: list[str]
    mean: list[float]
    std: list[float]
    vocabularies: dict[str, list[str]]

    @classmethod
    def fit(cls, train: pl.DataFrame, numeric: Sequence[str]) -> Preprocessor:
        means, stds = [], []
        for name in numeric:
            values = train[name].cast(pl.Float64).drop_nulls().drop_nans().to_numpy()
            mean = float(values.mean()) if values.size else 0.0
            std = float(values.std()) if values.size else 0.0
            means.append(mean)
            # A constant (or absent) feature is centred, not divided by zero.
            stds.append(std if std > 0.0 else 1.0)
        vocabularies = {
            name: sorted(str(v) for v in train[name].drop_nulls().unique().to_list())
            for name in CATEGORICAL_FEATURES
        }
        return cls(list(numeric), means, stds, vocabularies)

    @property
    def input_columns(self) -> list[str]:
        return [*self.numeric, *CATEGORICAL_FEATURES]

    def numeric_matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """[standardised values | missing indicators], float32; missing -> mean, flagged."""
        raw = frame.select([pl.col(f).cast(pl.Float64) for f in self.numeric]).to_numpy()
        raw = raw.reshape(frame.height, len(self.numeric))
        missing = np.isnan(raw)
        scaled = (raw - np.asarray(self.mean)) / np.asarray(self.std)
        scaled[missing] = 0.0
        return np.hstack([scaled, missing.astype(np.float64)]).astype(np.float32)

    def category_codes(self, frame: pl.DataFrame) -> np.ndarray:
        """int64 codes per categorical column; 0 for a value the training window never saw."""
        columns = []
        for name in CATEGORICAL_FEATURES:
            index = {value: i + 1 for i, value in enumerate(self.vocabularies[name])}
            values = frame[name].cast(pl.String).to_list()
            columns.append(np.array([index.get(v, 0) if v is not None else 0 for v in values]))
        return np.stack(columns, axis=1).astype(np.int64).reshape(frame.height, -1)


@dataclass(frozen=True)
class MlpModel:
    """A trained MLP as plain arrays: what is stored, hashed, logged and scored."""

    preprocessor: Preprocessor
    weights: dict[str, np.ndarray]  # torch state_dict names -> float32 arrays
    hidden_sizes: list[int]
    best_epoch: int

    @property
    def input_columns(self) -> list[str]:
        return self.preprocessor.input_columns

    def to_text(self) -> str:
        """Canonical JSON (sorted keys, weights as base64 little-endian float32): the same
        model gives the same text, byte for byte, so its sha256 identifies the weights."""
        payload = {
            "format": FORMAT,
            "numeric": self.preprocessor.numeric,
            "mean": self.preprocessor.mean,
            "std": self.preprocessor.std,
            "vocabularies": self.preprocessor.vocabularies,
            "hidden_sizes": self.hidden_sizes,
            "best_epoch": self.best_epoch,
            "weights": {
                name: {
                    "shape": list(array.shape),
                    "float32_le": base64.b64encode(array.astype("<f4").tobytes()).decode(),
                }
                for name, array in sorted(self.weights.items())
            },
        }
        return json.dumps(payload, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str) -> MlpModel:
        payload = json.loads(text)
        if payload.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} model (format {payload.get('format')!r})")
        weights = {
            name: np.frombuffer(base64.b64decode(entry["float32_le"]), dtype="<f4")
            .reshape(entry["shape"])
            .astype(np.float32)
            for name, entry in payload["weights"].items()
        }
        preprocessor = Preprocessor(
            payload["numeric"], payload["mean"], payload["std"], payload["vocabularies"]
        )
        return cls(preprocessor, weights, list(payload["hidden_sizes"]), payload["best_epoch"])

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """P(delayed) per row: a numpy forward pass, the network's eval mode (no dropout)."""
        codes = self.preprocessor.category_codes(frame)
        parts = [self.preprocessor.numeric_matrix(frame)]
        for i, _ in enumerate(CATEGORICAL_FEATURES):
            parts.append(self.weights[f"embeddings.{i}.weight"][codes[:, i]])
        x = np.hstack(parts).astype(np.float32)
        for layer in range(len(self.hidden_sizes) + 1):
            w, b = self.weights[f"layers.{layer}.weight"], self.weights[f"layers.{layer}.bias"]
            x = x @ w.T + b
            if layer < len(self.hidden_sizes):
                x = np.maximum(x, 0.0)
        logits = x[:, 0].astype(np.float64)
        return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float64)


@dataclass(frozen=True)
class TrainedMlp:
    """The `train_on_dataset` result for family=mlp (the same surface as LightGBM's)."""

    model: MlpModel
    validation_auc: float
    epochs_run: int
    state_dict: dict[str, Any] = field(repr=False)  # torch tensors, for tests and inspection

    @property
    def feature_names(self) -> list[str]:
        return self.model.input_columns

    @property
    def best_iteration(self) -> int:
        return self.model.best_epoch

    @property
    def model_text(self) -> str:
        return self.model.to_text()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model_text.encode()).hexdigest()

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        return self.model.predict(frame)


def _torch() -> tuple[Any, Any]:
    try:
        import pytorch_lightning
        import torch
    except ImportError as exc:
        raise MlpUnavailableError(
            f"model.family is mlp but {exc.name} is not installed: run {INSTALL_HINT}"
        ) from exc
    return torch, pytorch_lightning


def mlp_seeds(seed: int, num_threads: int) -> dict[str, Any]:
    """What pins the MLP's randomness and summation order (recorded in the manifest)."""
    return {
        "seed_everything": seed,
        "seed_everything_workers": True,
        "dataloader_generator_seed": seed,
        "dataloader_num_workers": 0,
        "trainer_deterministic": True,
        "torch_num_threads": num_threads,
        "accelerator": "cpu",
    }


def train_mlp(
    train: pl.DataFrame,
    validation: pl.DataFrame,
    *,
    features: Sequence[str],
    label: str,
    params: MlpParams,
    seed: int,
    num_threads: int,
) -> TrainedMlp:
    """Fit on `train`, early-stop on `validation`'s loss, keep the best epoch's weights."""
    torch, ptl = _torch()
    preprocessor = Preprocessor.fit(train, features)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # "does not have many workers": num_workers=0 is on purpose (determinism).
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            return _fit(torch, ptl, preprocessor, train, validation, label, params, seed)
    finally:
        torch.set_num_threads(previous_threads)


def _tensors(torch: Any, pre: Preprocessor, frame: pl.DataFrame, label: str) -> Any:
    return torch.utils.data.TensorDataset(
        torch.from_numpy(pre.numeric_matrix(frame)),
        torch.from_numpy(pre.category_codes(frame)),
        torch.from_numpy(frame[label].cast(pl.Float32).to_numpy().copy()),
    )


def _fit(
    torch: Any,
    ptl: Any,
    pre: Preprocessor,
    train: pl.DataFrame,
    validation: pl.DataFrame,
    label: str,
    params: MlpParams,
    seed: int,
) -> TrainedMlp:
    nn = torch.nn
    ptl.seed_everything(seed, workers=True, verbose=False)

    class Network(ptl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = nn.ModuleList(
                nn.Embedding(len(pre.vocabularies[name]) + 1, params.embedding_dim)
                for name in CATEGORICAL_FEATURES
            )
            width = 2 * len(pre.numeric) + len(CATEGORICAL_FEATURES) * params.embedding_dim
            sizes = [width, *params.hidden_sizes, 1]
            self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
            self.dropout = nn.Dropout(params.dropout)
            self.loss = nn.BCEWithLogitsLoss()

        def forward(self, numeric: Any, codes: Any) -> Any:
            x = torch.cat(
                [numeric, *(e(codes[:, i]) for i, e in enumerate(self.embeddings))], dim=1
            )
            for layer in self.layers[:-1]:
                x = self.dropout(torch.relu(layer(x)))
            return self.layers[-1](x).squeeze(1)

        def training_step(self, batch: Any, _: int) -> Any:
            numeric, codes, y = batch
            return self.loss(self(numeric, codes), y)

        def validation_step(self, batch: Any, _: int) -> None:
            numeric, codes, y = batch
            self.log("val_loss", self.loss(self(numeric, codes), y), batch_size=len(y))

        def configure_optimizers(self) -> Any:
            return torch.optim.AdamW(
                self.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
            )

    class KeepBest(ptl.Callback):
        """The weights of the epoch with the lowest validation loss (early stopping alone
        would leave the last epoch's)."""

        def __init__(self) -> None:
            self.loss = float("inf")
            self.epoch = 0
            self.state: dict[str, Any] = {}

        def on_validation_epoch_end(self, trainer: Any, module: Any) -> None:
            loss = float(trainer.callback_metrics["val_loss"])
            if loss < self.loss:
                self.loss, self.epoch = loss, trainer.current_epoch + 1
                self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}

    network = Network()
    loader = torch.utils.data.DataLoader(
        _tensors(torch, pre, train, label),
        batch_size=params.batch_size,
        shuffle=True,
        num_workers=0,
        generator=torch.Generator().manual_seed(seed),
    )
    # The whole validation window as one batch: one loss per epoch, one summation order.
    valid = _tensors(torch, pre, validation, label)
    valid_loader = torch.utils.data.DataLoader(valid, batch_size=max(len(valid), 1))
    best = KeepBest()
    trainer = ptl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=params.max_epochs,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[
            ptl.callbacks.EarlyStopping(monitor="val_loss", mode="min", patience=params.patience),
            best,
        ],
    )
    trainer.fit(network, loader, valid_loader)
    weights = {k: v.cpu().numpy().astype(np.float32) for k, v in best.state.items()}
    model = MlpModel(pre, weights, list(params.hidden_sizes), best.epoch)
    scores = model.predict(validation)
    return TrainedMlp(
        model=model,
        validation_auc=float(roc_auc_score(validation[label].to_numpy(), scores)),
        epochs_run=int(trainer.current_epoch),
        state_dict=best.state,
    )


def load_model(text: str) -> MlpModel:
    return MlpModel.from_text(text)
