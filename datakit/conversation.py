"""Which of a build's question/answer items become one shard sample, in which turn order, under
which key.

A record's template QA of one language over the same media become one multi-turn conversation
holding the media once (InternVL's SFT format): a BUSI image's diagnosis, presence, count,
location, box and size questions are one sample per language, not twelve copies of the image.
Turn order is shuffled with a seed drawn from (recipe seed, record, language), so no task always
comes first. LLM-written QA (``llm_enrich``: reasoning-style answers) stay single-turn samples,
and so does every item when the recipe says ``multi_turn: false``. A released conversation of
several turns (``conversations`` converter: LLaVA-Med, PubMedVision ...) is one item and stays
one sample with its turns in their order; an interleaved document (``fleming-interleaved/1``)
is one sample of its own kind.

Keys: a conversation of several turns is ``sample_key(source, record id, "qa", lang)`` (plus an
index when one record has items over different media); a single turn keeps its item's key, so a
single-turn build's keys are the items' own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datakit.sample import sample_key
from datakit.seeding import rng_for

SINGLE_TURN_CONVERTERS = frozenset({"llm_enrich"})
CHAT_TASK = "qa"  # the task part of a multi-turn sample's key (no converter task is named so)


@dataclass(slots=True)
class Chat:
    """One shard sample: its key and its items (merge summaries) in turn order."""

    key: str
    members: list[dict[str, Any]]

    @property
    def split(self) -> str:
        return self.members[0]["split"]


def joinable(item: dict[str, Any]) -> bool:
    """A single question/answer item of a template or pass-through converter."""
    return (item.get("converter") not in SINGLE_TURN_CONVERTERS and item.get("pairs", 1) == 1
            and item.get("schema") is None)


def assemble(items: list[dict[str, Any]], seed: int, multi_turn: bool) -> list[Chat]:
    """The shard samples of ``items`` (kept, split-assigned summaries), sorted by key."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for s in items:
        if multi_turn and joinable(s):
            gk: tuple = ("chat", s["split"], s["record_uid"], s["lang"], tuple(s["media_sha256"]))
        else:
            gk = ("single", s["key"])
        groups.setdefault(gk, []).append(s)
    media_index: dict[tuple[str, str], list[tuple[str, ...]]] = {}
    for gk in sorted(g for g in groups if g[0] == "chat"):
        media_index.setdefault((gk[2], gk[3]), []).append(gk[4])
    chats = []
    for gk, members in groups.items():
        members.sort(key=lambda s: s["key"])
        if len(members) == 1:
            chats.append(Chat(key=members[0]["key"], members=members))
            continue
        _, _, uid, lang, media = gk
        rng_for(seed, "turns", uid, lang).shuffle(members)
        index = media_index[(uid, lang)].index(media)
        source, record_id = uid.split(":", 1)
        chats.append(Chat(key=sample_key(source, record_id, CHAT_TASK, lang, index), members=members))
    chats.sort(key=lambda c: c.key)
    keys = [c.key for c in chats]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise RuntimeError(f"two shard samples share the key {dup!r}: a converter named a task {CHAT_TASK!r}?")
    return chats
