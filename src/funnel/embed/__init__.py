"""Item, query and user/item-type embeddings from sessions, the Airbnb way (KDD 2018).

Public API: :class:`ItemEmbeddings`, :class:`QueryEmbeddings`, :class:`TypeEmbeddings`,
:class:`TypeRules`, :func:`build_embeddings` (the ``embeddings`` artifact component).
"""

from funnel.embed.items import ItemEmbeddings, QueryEmbeddings
from funnel.embed.types import TypeEmbeddings, TypeRules

__all__ = ["ItemEmbeddings", "QueryEmbeddings", "TypeEmbeddings", "TypeRules"]
