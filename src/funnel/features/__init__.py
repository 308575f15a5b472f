"""Feature specs and transforms fitted once and shared by training and serving.

The same :class:`FeatureSet.transform` turns raw columns into model input offline and online;
the fitted state (vocabularies, quantile edges, means) is saved as JSON next to the model.
"""

from funnel.features.hashing import hash_bucket, signed_hash
from funnel.features.specs import (
    BucketSpec,
    CrossSpec,
    Encoded,
    FeatureSet,
    HashSpec,
    HistorySpec,
    NumericSpec,
    SequenceSpec,
    VocabSpec,
    as_columns,
)

__all__ = [
    "BucketSpec",
    "CrossSpec",
    "Encoded",
    "FeatureSet",
    "HashSpec",
    "HistorySpec",
    "NumericSpec",
    "SequenceSpec",
    "VocabSpec",
    "as_columns",
    "hash_bucket",
    "signed_hash",
]
