"""The engine's privacy hook chain: the defaults of the policy, then ``[privacy] hooks``.

One chain per configuration in a process (the log filter, the pipeline, the
receipts and the admin commands share it), built from the settings: ``RedactionHook`` and ``RetentionHook`` (with the configured
retention), then the operator's hooks in the order configured
(privacy_hooks/hooks.py; docs/contract.md §4, "Privacy hooks").
"""

from __future__ import annotations

from engine.config import Settings
from privacy_hooks import HookChain, RetentionPolicy, default_chain, load_hooks

__all__ = ["chain_for", "retention_policy"]


def retention_policy(settings: Settings) -> RetentionPolicy:
    """The retention policy of ``[privacy]``."""
    d = settings.privacy.retention_days
    return RetentionPolicy(
        message=d.message, payload=d.payload, activity_log=d.activity_log, audit=d.audit,
        dlr_wait_h=settings.privacy.dlr_wait_h,
    )


_CHAINS: dict[int, tuple[Settings, HookChain]] = {}


def chain_for(settings: Settings) -> HookChain:
    """The chain of ``settings``: built on first use (custom hooks created once),
    the same object for every later call with the same settings object."""
    known = _CHAINS.get(id(settings))
    if known is not None and known[0] is settings:
        return known[1]
    chain = default_chain(retention_policy(settings), load_hooks(settings.privacy.hooks))
    _CHAINS[id(settings)] = (settings, chain)
    return chain
