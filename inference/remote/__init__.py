"""Remote backends: OpenAI-compatible endpoints and KServe v2 (Open Inference Protocol) servers.

They need only httpx (``pip install 'aima[remote]'``); the registry imports them when a model of
theirs is created, never at ``import inference``.
"""
