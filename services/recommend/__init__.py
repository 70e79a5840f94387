"""Purchase-history recommendations: the hybrid model, its index, imports and evaluation.

`model` (the hybrid) and `signals` / `content` (its statistics) are pure numpy and scipy;
`index` wraps a catalog snapshot; `service.Recommender` is what the chat handlers use;
`importing` and `parsing` read catalog and purchase files; `datasets`, `tuning` and
`evaluation` measure the model on public data; `rerank` is the optional LLM re-ranker.
"""
