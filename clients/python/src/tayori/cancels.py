"""Cancels: stop a campaign (on every channel or one) or a job from the CRM, the
same way `tayori cancel` does.

A cancel is a field of the hash `{prefix}:cancels` (a plain key, no hash tag): the
field names what it stops, `campaign/<channel or *>/<campaign id>` or
`job/<job id>`; the value is JSON with exactly the keys `reason`, `by`, `at_ms`,
`until_ms` (the daemon refuses any other key, so nothing else is ever written).
Every daemon reads the hash with each dedupe claim and once a second: writing the
field is the whole cancel, deleting it lifts it, and one past `until_ms` is ignored
(and pruned by the daemons).
"""

from __future__ import annotations

import getpass
import json
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

#: How long a cancel lasts when `until` is not given (as `tayori cancel`): a
#: campaign's enqueueing rarely runs longer, and a forgotten cancel must not stop
#: next week's campaign of the same name.
DEFAULT_FOR = timedelta(hours=24)

#: A channel's wire id (Tayori's `ChannelId`): 1 to 15 of a-z, 0-9 and _.
CHANNEL_NAME = re.compile(r"[a-z0-9_]{1,15}")

#: The keys of a cancel's JSON, exactly: the daemon reads it with unknown keys denied.
CANCEL_KEYS = ("reason", "by", "at_ms", "until_ms")

#: Something `until` takes: an aware datetime, a timedelta from now, or seconds from now.
Until = datetime | timedelta | int | float

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SEP = "/"
_EVERY_CHANNEL = "*"


@dataclass(frozen=True)
class Cancel:
    """One cancel as recorded: what it stops, why, who, since when and until when."""

    kind: Literal["campaign", "job"]
    #: The campaign id or the job id.
    id: str
    #: For a campaign cancel on one channel, that channel; None on every channel (and for a job).
    channel: str | None
    reason: str
    by: str
    at: datetime
    until: datetime

    @property
    def field(self) -> str:
        """The field of `{prefix}:cancels` it is stored under."""
        if self.kind == "job":
            return f"job{_SEP}{self.id}"
        return f"campaign{_SEP}{self.channel or _EVERY_CHANNEL}{_SEP}{self.id}"

    def to_json(self) -> str:
        """The value stored: exactly the four keys the daemon reads."""
        value = {"reason": self.reason, "by": self.by, "at_ms": _ms(self.at), "until_ms": _ms(self.until)}
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def cancels_key(prefix: str) -> str:
    """`{prefix}:cancels`: the hash of cancels every daemon reads."""
    return f"{prefix}:cancels"


def new_cancel(
    kind: Literal["campaign", "job"],
    target_id: str,
    *,
    reason: str,
    channel: str | None = None,
    by: str | None = None,
    until: Until | None = None,
    now: datetime | None = None,
) -> Cancel:
    """A checked cancel, made `now` (default: the current time). Raises `ValueError`
    naming the argument: an empty id or reason, a channel that cannot be one, an
    `until` that is naive or not in the future."""
    if not isinstance(target_id, str) or not target_id:
        raise ValueError(f"the {kind} id: a non-empty string is required")
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("`reason` is required: say why (it goes into every `cancelled` event)")
    if channel is not None:
        if kind != "campaign":
            raise ValueError("`channel`: only a campaign is cancelled per channel; a job cancel stops it on every channel")
        if not isinstance(channel, str) or not CHANNEL_NAME.fullmatch(channel):
            raise ValueError(f"`channel`: {channel!r} is not a channel name (1 to 15 of a-z, 0-9 and _), e.g. 'sms'")
        if channel == "best":
            raise ValueError("`channel`: 'best' is not a channel a job is sent on; name the channel (e.g. 'email'), or omit it for every channel")
    if by is None:
        by = default_by()
    elif not isinstance(by, str) or not by.strip():
        raise ValueError("`by`: a non-empty string is required (or omit it for user@host)")
    # Milliseconds, as stored: what is returned is what a `cancels()` reads back.
    now = _from_ms(_ms(now or datetime.now(timezone.utc)))
    end = _until(until, now)
    if end <= now:
        raise ValueError(f"`until`: {end.isoformat()} is not in the future")
    return Cancel(kind=kind, id=target_id, channel=channel, reason=reason, by=by, at=now, until=end)


def default_by() -> str:
    """Who cancels when `by` is not given: user@host, as `tayori cancel` writes it."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (some containers)
        user = "client"
    host = socket.gethostname()
    return f"{user}@{host}" if host else user


def parse_cancel(field: str, value: bytes | str, now: datetime | None = None) -> Cancel | None:
    """The cancel a field of the hash holds, if it is readable and active `now`
    (default: the current time); None for a lapsed one, a field of a kind this
    client does not know, or a value the daemon would not read either."""
    target = _parse_field(field)
    if target is None:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) != set(CANCEL_KEYS):
        return None
    reason, by, at_ms, until_ms = (data[k] for k in CANCEL_KEYS)
    if not (isinstance(reason, str) and isinstance(by, str) and _is_int(at_ms) and _is_int(until_ms)):
        return None
    try:
        at, until = _from_ms(at_ms), _from_ms(until_ms)
    except (OverflowError, ValueError, OSError):
        return None
    if until <= (now or datetime.now(timezone.utc)):
        return None
    kind, target_id, channel = target
    return Cancel(kind=kind, id=target_id, channel=channel, reason=reason, by=by, at=at, until=until)


def active_cancels(hash_fields: Mapping[Any, Any], now: datetime | None = None) -> list[Cancel]:
    """The active, readable cancels of an `HGETALL` reply, oldest first."""
    found = (parse_cancel(_text(f), v, now) for f, v in hash_fields.items())
    return sorted((c for c in found if c is not None), key=lambda c: (c.at, c.field))


def fields_of(hash_fields: Mapping[Any, Any], target_id: str) -> list[str]:
    """The fields of an `HGETALL` reply that cancel the campaign or job `target_id`
    (lapsed or unreadable values included: lifting removes them all)."""
    out = []
    for f in hash_fields:
        target = _parse_field(_text(f))
        if target is not None and target[1] == target_id:
            out.append(_text(f))
    return out


def _parse_field(field: str) -> tuple[Literal["campaign", "job"], str, str | None] | None:
    """(kind, id, channel) of a field; the id goes last, so it may hold anything."""
    kind, sep, rest = field.partition(_SEP)
    if not sep:
        return None
    if kind == "job":
        return ("job", rest, None)
    if kind == "campaign":
        channel, sep, target_id = rest.partition(_SEP)
        if not sep:
            return None
        if channel == _EVERY_CHANNEL:
            return ("campaign", target_id, None)
        if CHANNEL_NAME.fullmatch(channel):
            return ("campaign", target_id, channel)
    return None


def _until(until: Until | None, now: datetime) -> datetime:
    if until is None:
        return now + DEFAULT_FOR
    if isinstance(until, datetime):
        if until.tzinfo is None or until.utcoffset() is None:
            raise ValueError(f"`until`: a naive datetime ({until.isoformat()}) has no time zone; use an aware one")
        return _from_ms(_ms(until))
    if isinstance(until, timedelta) or _is_int(until) or isinstance(until, float):
        try:
            ahead = until if isinstance(until, timedelta) else timedelta(seconds=until)
            return _from_ms(_ms(now + ahead))
        except (OverflowError, ValueError):
            raise ValueError(f"`until`: {until!r} from now is not a time") from None
    raise ValueError(f"`until`: {type(until).__name__} is neither a datetime, a timedelta nor seconds")


def _ms(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(milliseconds=1)


def _from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)

