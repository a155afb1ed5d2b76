"""CallLog: each recorded turn takes its language and citations from the policy record of its own words."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from livekit.agents import llm, utils

from agent.worker import CallLog
from dialogue import TurnRecord


class Recorder:
    def __init__(self) -> None:
        self.turns: list[dict[str, Any]] = []

    def add_turn(self, session_id: str, speaker: str, text: str, **kw: Any) -> str:
        self.turns.append({"speaker": speaker, "text": text, **kw})
        return str(len(self.turns))


def _call() -> tuple[utils.EventEmitter, CallLog, Recorder]:
    session: utils.EventEmitter = utils.EventEmitter()
    rec = Recorder()
    return session, CallLog(session, "room", rec, "s1"), rec  # type: ignore[arg-type]


def _say(session: utils.EventEmitter, role: str, text: str) -> None:
    session.emit("conversation_item_added", SimpleNamespace(item=llm.ChatMessage(role=role, content=[text])))


def _policy(n: int, lang: str, user: str, reply: str, cites: list[dict] | None = None) -> TurnRecord:
    return TurnRecord(turn=n, language=lang, user=user, decision="answer", reply=reply, citations=cites or [])


def test_a_caller_turn_added_before_its_policy_record_gets_that_records_language():
    session, log, rec = _call()
    _say(session, "assistant", "Hello, how can I help?")  # the greeting: no policy record
    log.on_policy_turn(_policy(1, "en", "what are your opening hours", "Monday to Friday."))
    _say(session, "user", "what are your opening hours")
    _say(session, "assistant", "Monday to Friday.")
    # the framework adds the next question before the policy has answered it
    _say(session, "user", "营业时间是几点")
    assert [t["speaker"] for t in rec.turns] == ["assistant", "user", "assistant"]  # the question waits
    log.on_policy_turn(_policy(2, "zh", "营业时间是几点", "周一到周五。", [{"doc": "hours.md"}]))
    _say(session, "assistant", "周一到周五。")
    langs = [(t["speaker"], t["language"]) for t in rec.turns]
    assert langs == [("assistant", None), ("user", "en"), ("assistant", "en"), ("user", "zh"), ("assistant", "zh")]
    assert rec.turns[0]["citations"] is None and rec.turns[-1]["citations"] == [{"doc": "hours.md"}]


def test_an_interrupted_answer_cites_the_record_it_is_a_prefix_of():
    session, log, rec = _call()
    log.on_policy_turn(_policy(1, "en", "hours", "We open at nine. We close at five.", [{"doc": "a"}]))
    log.on_policy_turn(_policy(2, "en", "card", "Call the hotline.", [{"doc": "b"}]))
    session.emit("conversation_item_added", SimpleNamespace(item=llm.ChatMessage(
        role="assistant", content=["We open at nine."], interrupted=True)))
    assert rec.turns[0]["citations"] == [{"doc": "a"}] and rec.turns[0]["interrupted"]


def test_a_caller_turn_no_policy_answered_is_recorded_at_the_end_of_the_call():
    session, log, rec = _call()
    log.on_policy_turn(_policy(1, "zh", "你好", "您好。"))
    _say(session, "user", "thanks, bye")  # said while a colleague had the call: the policy never ran
    assert rec.turns == []
    log.close()
    assert [(t["speaker"], t["text"], t["language"]) for t in rec.turns] == [("user", "thanks, bye", "zh")]
    log.close()
    assert len(rec.turns) == 1
