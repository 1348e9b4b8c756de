"""Canonical form, hashing and link-by-link verification of audit chains. Pure: no database."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from compliance.audit.canonical import canonical

GENESIS = "0" * 64
SYSTEM_CHAIN = "system"


@dataclass(frozen=True)
class AuditRecord:
    """One audit event as hashed. ``id`` is the global sequence number across all chains."""

    id: int
    chain_id: str
    chain_seq: int
    occurred_at: datetime
    actor_id: str | None
    on_behalf_of: str | None
    action: str
    outcome: str
    subjects: tuple[str, ...]
    state_before: str | None
    state_after: str | None
    reason_codes: tuple[str, ...]
    ruleset_id: str | None
    payload: Mapping[str, Any]
    prev_hash: str
    hash: str = ""

    def canonical(self) -> bytes:
        """The bytes the event's hash covers: RFC 8785 canonical JSON without the hash."""
        return canonical_bytes(self)

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON data, as the hash and an export render it."""
        return {
            "id": self.id,
            "chain": self.chain_id,
            "seq": self.chain_seq,
            "at": format_instant(self.occurred_at),
            "actor": self.actor_id,
            "on_behalf_of": self.on_behalf_of,
            "action": self.action,
            "outcome": self.outcome,
            "subjects": list(self.subjects),
            "state_before": self.state_before,
            "state_after": self.state_after,
            "reasons": list(self.reason_codes),
            "ruleset": self.ruleset_id,
            "payload": dict(self.payload),
            "prev": self.prev_hash,
            "hash": self.hash,
        }


def format_instant(instant: datetime) -> str:
    """Fixed-width UTC text, so the hashed form never depends on how a driver renders time.

    Written from ``isoformat``, several times faster than the ``strftime`` it equals
    (``tests/test_audit_rows.py``); years before 1000, which ``strftime`` may not pad, and
    subclasses take ``strftime`` itself."""
    if type(instant) is not datetime or instant.year < 1000:
        return instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    text = instant.isoformat()
    return text[:26] + "Z" if instant.microsecond else text[:19] + ".000000Z"


def canonical_bytes(record: AuditRecord) -> bytes:
    body = record.to_dict()
    del body["hash"]
    return canonical(body)


def compute_hash(record: AuditRecord) -> str:
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


@dataclass(frozen=True)
class Break:
    """The first place a chain fails to verify."""

    event_id: int | None
    chain_id: str
    chain_seq: int | None
    problem: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "chain": self.chain_id,
            "seq": self.chain_seq,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class Head:
    """A chain head row as verification reads it."""

    chain_id: str
    last_seq: int
    last_hash: str
    last_event_id: int
    checkpointed_seq: int


@dataclass(frozen=True)
class Claim:
    """What one checkpoint recorded for one chain: the hash of its event ``seq``."""

    chain_id: str
    seq: int
    digest: str


class _Peek:
    """An iterator one item ahead, so that sorted streams can be merged."""

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = iter(items)
        self.next: Any = next(self._items, None)

    def pop(self) -> Any:
        item, self.next = self.next, next(self._items, None)
        return item

    def next_is(self, chain: str) -> bool:
        return self.next is not None and self.next.chain_id == chain


@dataclass
class ChainWalk:
    """Consumes events ordered by (chain_id, chain_seq) together with the heads and the
    checkpoints' claims, both ordered by chain id in the same (code point) order, and records
    the first break found. The three streams are merged: memory holds one chain at a time,
    whatever the number of chains."""

    heads: Iterable[Head] = ()
    claims: Iterable[Claim] = ()
    events: int = 0
    chains: int = 0
    first_break: Break | None = None
    _chain: str | None = None
    _seq: int = 0
    _hash: str = GENESIS
    _last_id: int = 0
    _head: Head | None = None
    _claimed: dict[int, str] = field(default_factory=dict)
    # Breaks found in passing that rank after any break of the events themselves, first of
    # each kind, in the order they are reported.
    _later: dict[str, Break] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._heads = _Peek(self.heads)
        self._claims = _Peek(self.claims)

    def feed(self, records: Iterable[AuditRecord]) -> None:
        for record in records:
            if self.first_break is not None:
                return
            self.step(
                record.id, record.chain_id, record.chain_seq, record.prev_hash, record.hash, record
            )

    def _fail(self, event: tuple[int, int] | None, chain: str, problem: str) -> None:
        if self.first_break is None:
            self.first_break = Break(
                event[0] if event else None, chain, event[1] if event else None, problem
            )

    def step(
        self,
        event_id: int,
        chain_id: str,
        chain_seq: int,
        prev_hash: str,
        digest: str,
        content: AuditRecord | str | None,
    ) -> None:
        """One event, in (chain, sequence) order: its identity, links and stored hash, and
        ``content``: the hash of its content already computed (None: it has no canonical
        form), or its record, hashed only once the links hold."""
        self.events += 1
        if chain_id != self._chain:
            self._close_chain()
            if self.first_break is not None:
                return
            if self._chain is not None and chain_id < self._chain:
                self._fail((event_id, chain_seq), chain_id, "chain events are not contiguous")
                return
            self._open_chain(chain_id)
            if self.first_break is not None:
                return
        if chain_seq != self._seq + 1:
            self._fail(
                (event_id, chain_seq),
                chain_id,
                f"expected sequence {self._seq + 1}, found {chain_seq}",
            )
        elif prev_hash != self._hash:
            self._fail(
                (event_id, chain_seq),
                chain_id,
                "previous-hash link does not match the preceding event",
            )
        elif event_id <= self._last_id:
            self._fail(
                (event_id, chain_seq), chain_id, "global sequence goes backwards within the chain"
            )
        elif (
            content if content is None or isinstance(content, str) else _safe_hash(content)
        ) != digest:
            self._fail((event_id, chain_seq), chain_id, "event content does not match its hash")
        elif self._claimed.get(chain_seq, digest) != digest:
            self._fail(
                (event_id, chain_seq),
                chain_id,
                "event differs from the one a checkpoint recorded",
            )
        self._seq, self._hash, self._last_id = chain_seq, digest, event_id

    def _open_chain(self, chain: str) -> None:
        self._skip_to(chain)
        self._head = self._heads.pop() if self._heads.next_is(chain) else None
        self._claimed = {}
        while self._claims.next is not None and self._claims.next.chain_id == chain:
            claim = self._claims.pop()
            self._claimed[claim.seq] = claim.digest
        self._chain, self._seq, self._hash, self._last_id = chain, 0, GENESIS, 0
        self.chains += 1

    def _defer(self, kind: str, chain: str, problem: str) -> None:
        self._later.setdefault(kind, Break(None, chain, None, problem))

    def _skip_to(self, chain: str | None) -> None:
        """Heads and claims of chains before ``chain`` (None: all that are left) name chains
        with no events."""
        while self._heads.next is not None and (chain is None or self._heads.next.chain_id < chain):
            head = self._heads.pop()
            self._defer("no events", head.chain_id, "head record names a chain with no events")
        while self._claims.next is not None and (
            chain is None or self._claims.next.chain_id < chain
        ):
            claim = self._claims.pop()
            self._defer("missing", claim.chain_id, f"checkpointed event {claim.seq} is missing")

    def _close_chain(self) -> None:
        if self._chain is None:
            return
        head, chain = self._head, self._chain
        if head is None:
            self._fail(None, chain, "chain has events but no head record")
        elif (head.last_seq, head.last_hash) != (self._seq, self._hash):
            self._fail(
                None,
                chain,
                f"head records sequence {head.last_seq} but the chain ends at {self._seq}",
            )
        elif head.last_event_id != self._last_id:
            self._fail(None, chain, "head names another event as the chain's last")
        missing = [seq for seq in sorted(self._claimed) if seq > self._seq]
        if missing:
            self._defer("missing", chain, f"checkpointed event {missing[0]} is missing")
        recorded = max(self._claimed, default=0)
        if head is not None and chain != SYSTEM_CHAIN and head.checkpointed_seq != recorded:
            self._defer("mark", chain, "head's checkpoint mark disagrees with the checkpoints")

    def finish(self) -> Break | None:
        """The first break of the events, else a head or checkpointed event with no events."""
        self.part()
        if self.first_break is None:
            self.first_break = self._later.get("no events") or self._later.get("missing")
        return self.first_break

    def part(self) -> WalkPart:
        """The walk ended as one part of a walk split by chain ranges (``combined``)."""
        broke_closing = False
        if self.first_break is None:
            self._close_chain()
            broke_closing = self.first_break is not None
        if self.first_break is None:
            self._skip_to(None)
        return WalkPart(self.events, self.chains, self.first_break, broke_closing, self._later)

    @property
    def mark_break(self) -> Break | None:
        """A head whose checkpoint mark is not the last sequence the checkpoints recorded."""
        return self._later.get("mark")


@dataclass(frozen=True)
class WalkPart:
    """What a walk over one range of chains found: ``later`` holds the breaks that rank after
    any break of the events themselves, first of each kind (see ``ChainWalk``)."""

    events: int
    chains: int
    first_break: Break | None
    broke_closing: bool  # the break is in the range's last chain, found once its events ended
    later: Mapping[str, Break]

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "chains": self.chains,
            "first_break": _break_dict(self.first_break),
            "broke_closing": self.broke_closing,
            "later": {kind: _break_dict(b) for kind, b in self.later.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WalkPart:
        later = {str(kind): _break_of(b) for kind, b in data["later"].items()}
        return cls(
            int(data["events"]),
            int(data["chains"]),
            _break_of(data["first_break"]) if data["first_break"] else None,
            bool(data["broke_closing"]),
            {kind: b for kind, b in later.items() if b is not None},
        )


def _break_dict(found: Break | None) -> list[Any] | None:
    if found is None:
        return None
    return [found.event_id, found.chain_id, found.chain_seq, found.problem]


def _break_of(data: Any) -> Break | None:
    if data is None:
        return None
    event_id, chain, seq, problem = data
    return Break(event_id, str(chain), seq, str(problem))


@dataclass(frozen=True)
class Walked:
    """A whole walk, as one walk in chain order would have ended it."""

    events: int
    chains: int
    first_break: Break | None  # as ``ChainWalk.finish``
    mark_break: Break | None  # as ``ChainWalk.mark_break``


def combined(parts: Sequence[WalkPart]) -> Walked:
    """Parts over consecutive chain ranges, in order, as one walk over them all: it stops at
    the first break of the events (having read the event after a break found once a range's
    events ended, when the next range has one); failing that, the first deferred break."""

    def first(kind: str, walked: Sequence[WalkPart]) -> Break | None:
        return next((p.later[kind] for p in walked if kind in p.later), None)

    events = chains = 0
    for index, part in enumerate(parts):
        events, chains = events + part.events, chains + part.chains
        if part.first_break is not None:
            after = parts[index + 1 :]
            if part.broke_closing and any(p.events for p in after):
                events += 1  # one walk reads the next event before closing this chain
            return Walked(events, chains, part.first_break, first("mark", parts[: index + 1]))
    found = first("no events", parts) or first("missing", parts)
    return Walked(events, chains, found, first("mark", parts))


def _safe_hash(record: AuditRecord) -> str | None:
    """The hash, or None when tampering left content that has no canonical form at all."""
    try:
        return compute_hash(record)
    except (TypeError, ValueError, AttributeError):
        return None


def checkpoint_digest(
    heads: Iterable[tuple[str, int, str]], previous: str, *, presorted: bool = False
) -> str:
    """The digest a checkpoint commits to; ``presorted`` heads (in code point order of the
    chain id, as verification streams them) are hashed as they come, never held."""
    h = hashlib.sha256(previous.encode())
    for chain, seq, digest in heads if presorted else sorted(heads):
        h.update(f"\n{chain}\t{seq}\t{digest}".encode())
    return h.hexdigest()


def iter_heads(payload: Mapping[str, Any]) -> Iterator[tuple[str, int, str]]:
    for chain, (seq, digest) in payload.get("heads", {}).items():
        yield str(chain), int(seq), str(digest)
