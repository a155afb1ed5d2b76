"""What the agent says when it is not quoting the knowledge base, in each language.

A persona may override any phrase (``Persona.phrases``); ``{name}``,
``{organisation}`` and ``{topics}`` are filled in.
"""

from __future__ import annotations

PHRASES: dict[str, dict[str, str]] = {
    "no_answer": {
        "en": "I'm sorry, I don't have approved information about that. Would you like me to connect you to a person?",
        "zh": "抱歉，我没有这方面的核准资料。需要为您转接人工客服吗？",
    },
    "still_no_answer": {
        "en": "I'm sorry, I can't find that in my information either. A colleague can help you better. Shall I connect you now?",
        "zh": "抱歉，这个问题我也查不到，人工客服能更好地帮您。现在为您转接好吗？",
    },
    "transfer": {
        "en": "Of course. I'm connecting you to a colleague now; I've passed on what we discussed.",
        "zh": "好的，现在为您转接人工客服，我已经把我们的对话内容转交给同事。",
    },
    "transfer_reason": {
        "en": "I understand. This needs a colleague's attention, so I'm connecting you to a person now.",
        "zh": "明白，这个问题需要同事来处理，现在为您转接人工客服。",
    },
    "decline_offer": {
        "en": "All right. Is there anything else I can help you with?",
        "zh": "好的。还有什么可以帮您的吗？",
    },
    "handoff_unanswered": {
        "en": "I'm sorry, no colleague is free right now. I've created ticket {ticket_id} so that someone calls you back. Meanwhile I'm happy to keep helping you.",
        "zh": "抱歉，现在没有空闲的同事。我已为您创建工单{ticket_id}，同事会回电给您。在此期间，我可以继续为您服务。",
    },
    "handoff_back": {
        "en": "I'm back with you. Is there anything else I can help you with?",
        "zh": "我回来了。还有什么可以帮您的吗？",
    },
    "ticket_created": {
        "en": "I've created ticket {ticket_id} for you. A colleague will follow up soon.",
        "zh": "已为您创建工单{ticket_id}，同事会尽快跟进。",
    },
    "goodbye": {
        "en": "Thank you for calling {organisation}. Goodbye!",
        "zh": "感谢您的来电，再见！",
    },
    "injection": {
        "en": "I'm sorry, I can't change how I work. I'm happy to help with {topics}.",
        "zh": "抱歉，我不能改变我的工作方式。我可以帮您解答{topics}方面的问题。",
    },
    "pii_warning": {
        "en": "For your safety, please don't say card numbers or other personal details on this call.",
        "zh": "为了您的安全，请不要在通话中说出卡号或其他个人信息。",
    },
    "not_heard": {
        "en": "Sorry, I didn't catch that. Could you say it again?",
        "zh": "抱歉，我没有听清，请您再说一遍。",
    },
    "voice_failed": {
        "en": "Sorry, I lost my voice for a moment. Could you ask me that again?",
        "zh": "抱歉，我刚才没能说出来，请您再问一遍。",
    },
    "cut_off": {
        "en": "Sorry, we were cut off for a moment. I'm back.",
        "zh": "抱歉，刚才通话中断了一下，我回来了。",
    },
    "apology_retry": {
        "en": "Sorry, I'm having a technical problem. Could you say that again, or shall I connect you to a person?",
        "zh": "抱歉，系统出了点问题。请您再说一遍，或者需要为您转接人工客服吗？",
    },
    "tool_failed": {
        "en": "Sorry, I couldn't complete that just now. Shall I connect you to a person?",
        "zh": "抱歉，刚才没能完成操作。需要为您转接人工客服吗？",
    },
    "checking": {
        "en": "Let me check that for you.",
        "zh": "我帮您查一下。",
    },
}

# Phrases that end with an offer of a person: a "yes" right after one means "transfer me".
OFFER_KEYS = ("no_answer", "still_no_answer", "apology_retry", "tool_failed")


def phrase(key: str, language: str, overrides: dict[str, dict[str, str]] | None = None, **values: str) -> str:
    """The phrase ``key`` in ``language`` (English when that language has none), with values filled in."""
    table = {**PHRASES.get(key, {}), **((overrides or {}).get(key, {}))}
    text = table.get(language) or table.get("en") or ""
    try:
        return text.format(**values)
    except (KeyError, IndexError):  # a persona phrase with an unknown placeholder: say it as written
        return text
