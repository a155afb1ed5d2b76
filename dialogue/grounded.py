"""The grounded customer-service policy: persona rules, guardrails, retrieval, then an answer.

Every turn goes through the same deterministic checks, whichever model writes
the answer: prompt injection is refused, forbidden topics are declined, a
request for a person (or an escalation rule) hands the call over, personal data
is neither repeated nor stored. Only then is an answer written from the
retrieved passages, by templates (offline, no LLM) or by an OpenAI-compatible
LLM. No passage, no answer: the agent says so and offers a person.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from .guardrails import find_pii, is_prompt_injection, redact, redact_obj, speakable
from .knowledge import Hit, KnowledgeIndex, keywords
from .language import detect_language
from .persona import Persona
from .policy import Policy, PolicyError
from .templates import OFFER_KEYS, PHRASES
from .tools import CORE_TOOL_NAMES, ToolRegistry
from .types import Message, ReplyEvent, TextDelta, ToolCall, ToolSpec, TurnRecord
from .understanding import IntentMatch, Understanding

logger = logging.getLogger("dialogue.policy")

# ---------------------------------------------------------------- intents
_HUMAN_EN = re.compile(
    r"\b(human|real person|live person|representative|operator|someone real)\b"
    r"|\b(speak|talk|connect|transfer|put)\b.{0,30}\b(person|agent|someone|adviser|advisor|manager|staff|colleague|somebody)\b",
    re.I,
)
_HUMAN_ZH = re.compile(r"人工|真人|客服人员|工作人员|转接|经理|找个人")
_BYE_EN = re.compile(r"\b(bye|goodbye|good bye|that'?s all|that is all|nothing else|hang up)\b", re.I)
_BYE_ZH = re.compile(r"再见|拜拜|没有了|就这样吧|没别的|挂了")
_TICKET_EN = re.compile(r"\b(ticket|call me back|callback|call back|follow[- ]up)\b", re.I)
_TICKET_ZH = re.compile(r"工单|回电|回拨|跟进|给我回个电话")
_YES_EN = re.compile(r"^\W*(yes|yeah|yep|sure|ok|okay|please|yes please|please do|go ahead|do it|alright|all right)\b", re.I)
_YES_ZH = re.compile(r"^\W*(好|好的|是|是的|可以|要|需要|行|嗯|转吧|麻烦了)")
_NO_EN = re.compile(r"^\W*(no|nope|no thanks|not now|no thank you)\b", re.I)
_NO_ZH = re.compile(r"^\W*(不用|不要|不需要|算了|没事)")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？；;])\s*")


def _short(text: str) -> bool:
    return len(text.split()) <= 6 and len(re.findall(r"[\u4e00-\u9fff]", text)) <= 8


class GroundedPolicy(Policy):
    """Persona + knowledge + guardrails around an optional LLM (``llm=None``: the offline policy).

    One instance serves one call: ``turns`` collects the call's :class:`TurnRecord`
    list and ``on_turn`` (if set) receives each record as it is completed, e.g.
    to store it with the session. Heavy parts (the index, the embedding model)
    are shared between instances.
    """

    def __init__(self, persona: Persona, index: KnowledgeIndex, *, llm: Any | None = None,
                 registry: ToolRegistry | None = None, on_turn: Callable[[TurnRecord], None] | None = None,
                 llm_retries: int = 1, llm_core_tools: bool = False,
                 understanding: Understanding | None | bool = True) -> None:
        self.persona = persona
        self.index = index
        self.llm = llm  # an OpenAIPolicy-like object with .stream(payload, tools)
        self.registry = registry or ToolRegistry()
        self.on_turn = on_turn
        self.llm_retries = llm_retries
        # The checks above the LLM already handle handover, tickets and goodbyes; by default the
        # LLM sees only the deployment's tools, which small models handle far more reliably.
        self.llm_core_tools = llm_core_tools
        self.turns: list[TurnRecord] = []
        self.escalation: dict[str, Any] | None = None
        self._unanswered = 0
        # Intents and answerability by meaning (True: built on first use from the shared encoder;
        # False/None: keyword rules and the hybrid index only).
        self._understanding = understanding
        self.name = "grounded-llm" if llm is not None else "grounded-offline"

    @property
    def model(self) -> str:
        return getattr(self.llm, "model", "") or "offline"

    # ------------------------------------------------------------ helpers
    @property
    def understanding(self) -> Understanding | None:
        """The meaning layer for this call's persona and knowledge (None when unavailable)."""
        if self._understanding is True:
            try:
                self._understanding = Understanding(self.persona, self.index)
            except Exception as e:  # no encoder: the keyword rules still hold
                logger.warning("understanding by meaning unavailable: %s", e)
                self._understanding = None
        return self._understanding or None

    def _say(self, key: str, lang: str, **values: str) -> str:
        return self.persona.phrase(key, lang, **values)

    def _offered_person(self, messages: list[Message]) -> bool:
        last_assistant = next((m.content for m in reversed(messages[:-1]) if m.role == "assistant"), "")
        if not last_assistant:
            return False
        offers = {t for k in OFFER_KEYS for t in PHRASES[k].values()}
        offers |= {t for k in OFFER_KEYS for t in self.persona.phrases.get(k, {}).values()}
        offers |= {t for topic in self.persona.forbidden_topics for t in topic.reply.values()
                   if re.search(r"connect|转接", t)}
        return any(o.strip() and (o.strip() in last_assistant or last_assistant.strip() in o) for o in offers)

    def _summary(self, messages: list[Message]) -> str:
        """A redacted summary for the colleague taking over: the caller's recent requests."""
        said = [redact(m.content) for m in messages if m.role == "user" and m.content.strip()][-4:]
        return " | ".join(said)[:500]

    def _language(self, messages: list[Message]) -> str:
        default = self.persona.default_language
        for m in reversed(messages):
            if m.role == "user" and m.content.strip():
                lang = detect_language(m.content, default="")
                if lang:
                    return lang if lang in self.persona.languages else default
        return default

    def _finish(self, rec: TurnRecord, started: float) -> None:
        rec.latency_ms = round((time.perf_counter() - started) * 1000, 1)
        rec.reply = redact(rec.reply)
        self.turns.append(rec)
        # The log line holds only redacted text.
        logger.info("turn %d %s lang=%s decision=%s citations=%s tools=%s", rec.turn, self.name, rec.language,
                    rec.decision, [c["chunk_id"] for c in rec.citations], [t["name"] for t in rec.tool_calls])
        if self.on_turn:
            try:
                self.on_turn(rec)
            except Exception:  # a failing audit sink must not break the call
                logger.exception("on_turn callback failed")

    @staticmethod
    def _speak(text: str, rec: TurnRecord) -> TextDelta:
        text = speakable(text, rec.language)
        rec.reply += text
        return TextDelta(text)

    def _call(self, name: str, args: dict, rec: TurnRecord) -> ToolCall:
        rec.tool_calls.append({"name": name, "arguments": redact_obj(args)})
        if name == "transfer_to_human":
            self.escalation = {"reason": args.get("reason", ""), "summary": args.get("summary", "")}
        return ToolCall(name=name, arguments=args)

    # ------------------------------------------------------------ the turn
    async def respond(self, messages: list[Message], tools: list[ToolSpec] | None = None) -> AsyncIterator[ReplyEvent]:
        started = time.perf_counter()
        lang = self._language(messages)
        last = messages[-1] if messages else Message("user", "")
        rec = TurnRecord(turn=len(self.turns) + 1, language=lang, user="", decision="", policy=self.name,
                         model=self.model, at=datetime.now(UTC).isoformat(timespec="seconds"))
        try:
            if last.role == "tool":
                async for ev in self._after_tool(messages, last, lang, rec):
                    yield ev
                return
            text = last.content.strip() if last.role == "user" else ""
            rec.user = redact(text)
            async for ev in self._answer_user(messages, text, lang, tools or [], rec):
                yield ev
        finally:
            self._finish(rec, started)

    async def _after_tool(self, messages: list[Message], last: Message, lang: str, rec: TurnRecord) -> AsyncIterator[ReplyEvent]:
        rec.decision = "tool_result"
        try:
            result: Any = json.loads(last.content)
        except (TypeError, ValueError):
            result = last.content
        if last.name == "create_ticket":
            ticket_id = result.get("ticket_id", "") if isinstance(result, dict) else str(result)
            yield self._speak(self._say("ticket_created", lang, ticket_id=ticket_id), rec)
            return
        if last.name in CORE_TOOL_NAMES:
            return  # transfer and end_call were already announced
        tool = self.registry.get(last.name or "")
        if self.llm is not None:
            def speak_result() -> list[ReplyEvent]:
                said = tool.say(result, lang) if tool and tool.say else str(result)
                return [self._speak(said, rec)]

            async for ev in self._llm_answer(messages, lang, [], self.registry.specs(), rec, fallback=speak_result):
                yield ev
            return
        if (isinstance(result, dict) and "error" in result) or (
                isinstance(result, str) and result.lower().startswith(("error", "an error"))):
            yield self._speak(self._say("tool_failed", lang), rec)
        elif tool and tool.say:
            yield self._speak(tool.say(result, lang), rec)
        else:
            yield self._speak(str(result), rec)

    async def _answer_user(self, messages: list[Message], text: str, lang: str, tools: list[ToolSpec],
                           rec: TurnRecord) -> AsyncIterator[ReplyEvent]:
        p = self.persona
        zh = lang == "zh"
        if not text:
            rec.decision = "not_heard"
            yield self._speak(self._say("not_heard", lang), rec)
            return

        und = self.understanding
        # embeddings run in a worker thread: the call's event loop keeps moving audio meanwhile
        meaning: IntentMatch | None = await asyncio.to_thread(und.intent, text) if und is not None else None
        if meaning is not None:
            logger.info("intent by meaning: %s (%.3f, margin %.3f)", meaning.kind, meaning.score, meaning.margin)
        kind = meaning.kind if meaning else ""

        # 1. The caller's words never rewrite the rules.
        if is_prompt_injection(text) or kind == "injection":
            rec.decision = "refuse_injection"
            yield self._speak(self._say("injection", lang), rec)
            return

        # 2. Handover: asked for a person, an escalation rule, or "yes" to our offer.
        rule = p.escalation_rule(text) or (meaning.target if kind == "escalation" else None)
        wants_human = bool((_HUMAN_ZH if zh else _HUMAN_EN).search(text) or _HUMAN_EN.search(text)) or (
            kind == "handoff" and rule is None)
        accepted = self._offered_person(messages) and _short(text) and bool((_YES_ZH if zh else _YES_EN).search(text))
        if wants_human or rule or accepted:
            rec.decision = "escalate"
            reason = rule.reason if rule and not wants_human else ("caller asked for a person" if wants_human
                                                                    else "no approved answer; caller accepted a person")
            yield self._speak(self._say("transfer_reason" if rule and not wants_human else "transfer", lang), rec)
            yield self._call("transfer_to_human", {"reason": reason, "summary": self._summary(messages)}, rec)
            return
        if self._offered_person(messages) and _short(text) and (_NO_ZH if zh else _NO_EN).search(text):
            rec.decision = "offer_declined"
            yield self._speak(self._say("decline_offer", lang), rec)
            return

        # 3. Goodbye and follow-up tickets.
        if ((_BYE_ZH if zh else _BYE_EN).search(text) or kind == "end_call") and not re.search(r"[?？]", text):
            rec.decision = "end_call"
            yield self._speak(self._say("goodbye", lang), rec)
            yield self._call("end_call", {"reason": "caller said goodbye"}, rec)
            return
        if (_TICKET_ZH if zh else _TICKET_EN).search(text) or kind == "ticket":
            rec.decision = "ticket"
            yield self._call("create_ticket", {"subject": redact(text)[:120], "details": self._summary(messages)}, rec)
            return

        # 4. Personal data: never repeated, never stored; the rest of the sentence still counts.
        if find_pii(text):
            yield self._speak(self._say("pii_warning", lang) + " ", rec)
            text = re.sub(r"\[[A-Z_]+\]", " ", redact(text)).strip()
            rec.decision = "pii_warning"
            if len(keywords(text)) < 2:
                return

        # 5. Out of scope for this persona.
        topic = p.forbidden_topic(text, lang) or (meaning.target if kind == "forbidden" else None)
        if topic:
            rec.decision = "refuse_scope"
            yield self._speak(topic.reply.get(lang) or topic.reply.get("en") or self._say("no_answer", lang), rec)
            return

        # 6. A deployment tool (order status...). The LLM picks tools itself; offline, triggers decide.
        tool = self.registry.match(text)
        if tool and self.llm is None:
            args = tool.extract(text) if tool.extract else {}
            if args is None:
                rec.decision = "tool"
                yield self._speak(tool.missing_args.get(lang) or tool.missing_args.get("en") or self._say("not_heard", lang), rec)
                return
            rec.decision = "tool"
            yield self._call(tool.name, args, rec)
            return

        # 7. Grounded answer or an honest "I don't know".
        answer_text = ""
        if und is not None:
            # The knowledge sentence closest in meaning answers, if it is close enough (calibrated);
            # a follow-up ("and on saturdays?") is read together with the previous question.
            previous = next((m.content for m in reversed(messages[:-1]) if m.role == "user" and m.content.strip()), "")
            found, answerable = await asyncio.to_thread(und.passages, text, lang, previous=previous)
            if found and not answerable:
                # Below the threshold, the passage still answers when the keyword/MiniLM index,
                # ranking on its own, finds the very same passage relevant: two rankers agree.
                old = await asyncio.to_thread(self.index.search, text, k=1, language=lang)
                answerable = bool(old) and old[0].relevant and old[0].chunk.id == self.index.chunks[found[0].chunk_index].id
            hits = [Hit(self.index.chunks[f.chunk_index], f.score, f.score, 0.0, True) for f in found[:1]] if answerable else []
            answer_text = found[0].text if answerable else ""
        else:
            hits = [h for h in await asyncio.to_thread(self.index.search, text, k=3, language=lang) if h.relevant]
        rec.citations = [h.citation() for h in hits]
        if self.llm is not None and (hits or tool is not None):
            rec.decision = "answer" if hits else "tool"

            def fallback() -> list[ReplyEvent]:
                if hits:
                    rec.decision = "answer"
                    return [self._speak(answer_text or _extract_answer(hits[0], text, lang), rec)]
                args = tool.extract(text) if tool and tool.extract else {}
                if args is None:
                    return [self._speak(tool.missing_args.get(lang) or self._say("not_heard", lang), rec)]
                rec.decision = "tool"
                return [self._call(tool.name, args, rec)]

            if hits:
                self._unanswered = 0
            async for ev in self._llm_answer(messages, lang, hits, tools or self.registry.specs(), rec, fallback):
                yield ev
            return
        if not hits:
            self._unanswered += 1
            rec.decision = "no_answer" if rec.decision != "pii_warning" else rec.decision
            key = "still_no_answer" if self._unanswered >= p.max_unanswered else "no_answer"
            yield self._speak(self._say(key, lang), rec)
            return
        self._unanswered = 0
        rec.decision = "answer"
        yield self._speak(answer_text or _extract_answer(hits[0], text, lang), rec)

    # ------------------------------------------------------------ the LLM path
    def _payload(self, messages: list[Message], lang: str, hits: list[Hit]) -> list[dict]:
        payload = [{"role": "system", "content": self.persona.system_prompt(lang)}]
        if hits:
            passages = "\n".join(f"[{i + 1}] {h.chunk.spoken}" for i, h in enumerate(hits))
            payload.append({"role": "system", "content": "Approved knowledge:\n" + passages})
        for m in messages[-10:]:
            if m.role == "system":
                continue  # the persona's rules replace the agent's instructions
            content = redact(m.content)  # personal data does not leave for an LLM server
            if m.role == "tool":
                payload.append({"role": "user", "content": f"[result of {m.name}] {content}"})
            else:
                payload.append({"role": m.role, "content": content})
        return payload

    async def _llm_answer(self, messages: list[Message], lang: str, hits: list[Hit], tools: list[ToolSpec],
                          rec: TurnRecord, fallback: Callable[[], list[ReplyEvent]] | None = None
                          ) -> AsyncIterator[ReplyEvent]:
        """Stream the LLM's answer, sentence by sentence, keeping only what the evidence supports.

        Evidence is the retrieved passages, the latest tool result and the caller's
        own words. A sentence with a number or mostly words found nowhere in the
        evidence is dropped (small models invent prices and addresses); when
        nothing supported is left, ``fallback`` speaks instead (the passage
        itself, or the deployment tool the LLM failed to call).
        """
        payload = self._payload(messages, lang, hits)
        known = {t.name for t in tools} | CORE_TOOL_NAMES
        if not self.llm_core_tools:
            tools = [t for t in tools if t.name not in CORE_TOOL_NAMES]
        evidence = " ".join(h.chunk.spoken for h in hits)
        last_tool = next((m for m in reversed(messages) if m.role == "tool"), None)
        if last_tool is not None and messages and messages[-1] is last_tool:
            evidence += " " + last_tool.content
        last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
        checker = _SupportChecker(evidence, redact(last_user))
        attempts = 1 + max(0, self.llm_retries)
        for attempt in range(attempts):
            spoke = False
            buffer = ""

            def sentence_events(sentence: str):
                nonlocal spoke
                sentence = re.sub(r"\[\d+\]\s*", "", sentence).strip()  # citation markers are not spoken
                if not sentence:
                    return
                if not checker.supported(sentence):
                    rec.error = "dropped a sentence not supported by the knowledge"
                    logger.info("dropped an unsupported LLM sentence: %s", redact(sentence)[:120])
                    return
                spoke = True
                yield self._speak(sentence + ("" if lang == "zh" else " "), rec)

            try:
                async for ev in self.llm.stream(payload, tools):
                    if isinstance(ev, TextDelta):
                        # Whole sentences only: a card number split across deltas is still masked,
                        # and each sentence is checked against the evidence before it is spoken.
                        buffer += ev.text
                        parts = _SENTENCE_END.split(buffer)
                        for sentence in parts[:-1]:
                            for out in sentence_events(sentence):
                                yield out
                        buffer = parts[-1]
                    elif isinstance(ev, ToolCall):
                        if ev.name not in known:
                            raise PolicyError(f"the LLM called an unknown tool {ev.name!r}")
                        for out in sentence_events(buffer):
                            yield out
                        buffer = ""
                        if ev.name == "transfer_to_human" and not spoke:
                            yield self._speak(self._say("transfer", lang), rec)
                        if ev.name == "end_call" and not spoke:
                            yield self._speak(self._say("goodbye", lang), rec)
                        rec.decision = {"transfer_to_human": "escalate", "end_call": "end_call",
                                        "create_ticket": "ticket"}.get(ev.name, "tool")
                        spoke = True
                        yield self._call(ev.name, ev.arguments, rec)
                for out in sentence_events(buffer):
                    yield out
                if not spoke and fallback is not None:
                    rec.error = (rec.error or "the LLM gave no usable answer") + "; used the approved text instead"
                    for out in fallback():
                        yield out
                    return
                if not spoke:
                    raise PolicyError("the LLM returned an empty reply")
                return
            except PolicyError as e:
                rec.error = redact(str(e))
                logger.warning("LLM attempt %d/%d failed: %s", attempt + 1, attempts, rec.error)
                if spoke or attempt + 1 >= attempts:
                    break
        # Out of attempts: a short apology and an offer of a person, never silence.
        rec.decision = "llm_error"
        yield self._speak(self._say("apology_retry", lang), rec)

    async def aclose(self) -> None:
        if self.llm is not None:
            await self.llm.aclose()


class _SupportChecker:
    """Whether a sentence of an LLM answer is backed by the evidence (passages, tool result).

    The caller's words vouch only for numbers they said themselves (an order
    number read back); a sentence that merely repeats the question is no answer.
    """

    def __init__(self, evidence: str, user_text: str) -> None:
        self.numbers = set(re.findall(r"\d+", evidence + " " + user_text))
        self.terms = set(keywords(evidence))
        self.user_terms = set(keywords(user_text))
        self.min_share = 0.5

    def supported(self, sentence: str) -> bool:
        if any(n not in self.numbers for n in re.findall(r"\d+", sentence)):
            return False  # an invented price, time or address number
        terms = set(keywords(sentence))
        if terms and terms <= self.user_terms and re.search(r"[?？]\s*$", sentence):
            return False  # the question echoed back
        if len(terms) <= 1:
            return True  # "Sure." / "好的。"
        return len(terms & self.terms) / len(terms) >= self.min_share


def _sentences(text: str) -> list[str]:
    pieces: list[str] = []
    for line in re.split(r"\n+", text):
        line = re.sub(r"^\s{0,3}#{1,6}\s*", "", line).strip()
        pieces.extend(s.strip() for s in re.split(r"(?<=[.!?。！？])\s*", line) if s.strip())
    return pieces


def _extract_answer(hit: Hit, query: str, lang: str) -> str:
    """The sentences of a passage that answer ``query`` (the whole FAQ answer for FAQ entries)."""
    chunk = hit.chunk
    if chunk.answer:
        return chunk.answer
    q = set(keywords(query))
    sentences = [s for s in _sentences(chunk.text) if re.search(r"[.!?。！？]$", s) or len(s) > 40]
    if not sentences:
        return chunk.spoken
    scores = [len(q & set(keywords(s))) for s in sentences]
    best = max(range(len(sentences)), key=lambda i: (scores[i], -i))
    picked = [sentences[best]]
    limit = 90 if lang == "zh" else 260
    # The next sentence often finishes the thought ("...costs 30 euros. A package costs 270.").
    if best + 1 < len(sentences) and len(picked[0]) + len(sentences[best + 1]) <= limit and scores[best + 1] > 0:
        picked.append(sentences[best + 1])
    return ("" if lang == "zh" else " ").join(_strip_md(s) for s in picked)


def _strip_md(s: str) -> str:
    s = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", s)
    return re.sub(r"[*_`>|]+", "", s).strip()
