"""MLflow tracking and registry operations, Dagster-free: what the assets and the CLI do
with MLflow, in one place.

- `runs`: one MLflow run per model cache key, found again instead of made twice;
- `versions`: one model version per registry cache key, the champion lookup that tells "no
  champion" from "cannot tell", aliases moved under a lock;
- `champion`: the current champion's model read from its LightGBM text (never unpickled)
  and scored only on rows outside its own training window;
- `views`: read-only summaries for `trainflow status`.
"""

CHAMPION, CHALLENGER = "champion", "challenger"
# Tag on MLflow runs and model versions: the cache key of the output they belong to, so a
# retried or re-executed step finds what it already made.
CACHE_KEY_TAG = "trainflow.cache_key"
# Tag on MLflow runs (and model versions): the Dagster run that logged them. The name is
# dagster-mlflow's (its resource sets and searches runs by it), so a search for a Dagster
# run's MLflow runs is the same query whichever of the two logged them.
DAGSTER_RUN_ID_TAG = "dagster_run_id"
# The model as LightGBM text, logged by trainflow beside MLflow's flavour: what champion
# comparisons load (plain text; MLflow's loaders may unpickle what the store holds).
MODEL_TEXT_ARTIFACT = "trainflow/model.txt"


class RegistryError(RuntimeError):
    """The registry holds something trainflow cannot use as asked (not an outage)."""
