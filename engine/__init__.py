"""sendgate's engine: the pipeline that ties connectors, throttling, dlr and privacy hooks.

Jobs stream in → decode → route → segment → rate limit → window → submit_sm →
record outcomes and events in one script call per batch (docs/contract.md, docs/INTERNALS.md).
"""

__version__ = "0.1.0"
