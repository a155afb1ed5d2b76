"""Example deployment tool for the shop persona: order status (``DIALOGUE_TOOLS=dialogue.examples.shop_tools:registry``)."""

from __future__ import annotations

import re

from dialogue.tools import ToolRegistry

registry = ToolRegistry()

# Stand-in for the shop's order system.
ORDERS = {
    "10042": {"status": "shipped", "eta": "Thursday"},
    "10043": {"status": "being packed", "eta": "Monday"},
}
_STATUS_ZH = {"shipped": "已发货", "being packed": "正在打包"}
_ETA_ZH = {"Thursday": "周四", "Monday": "周一"}


def _order_id(text: str) -> dict | None:
    m = re.search(r"(?<!\d)(\d{5})(?!\d)", text)
    return {"order_id": m.group(1)} if m else None


def _say(result: dict, language: str) -> str:
    if not result.get("found"):
        return ("我没有找到这个订单号，请核对后再说一遍。" if language == "zh"
                else "I couldn't find that order number. Could you check it and say it again?")
    if language == "zh":
        return f"您的订单{result['order_id']}{_STATUS_ZH.get(result['status'], result['status'])}，预计{_ETA_ZH.get(result['eta'], result['eta'])}送达。"
    return f"Your order {result['order_id']} is {result['status']} and should arrive on {result['eta']}."


@registry.tool(
    description="Look up the delivery status of an order by its five-digit order number.",
    parameters={"type": "object", "properties": {"order_id": {"type": "string", "description": "Five-digit order number"}},
                "required": ["order_id"]},
    triggers={"en": ["order status", "where is my order", "my order", "track"], "zh": ["订单", "物流", "快递到哪"]},
    extract=_order_id,
    say=_say,
    missing_args={"en": "Sure. What is your five-digit order number?", "zh": "好的，请告诉我您的五位订单号。"},
)
async def order_status(order_id: str) -> dict:
    """Look up an order (here: a dictionary; in a deployment: the shop's API)."""
    order = ORDERS.get(str(order_id).strip())
    if not order:
        return {"found": False, "order_id": order_id}
    return {"found": True, "order_id": order_id, **order}
