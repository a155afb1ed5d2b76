"""The Chinese normaliser: what the Mandarin voice says for digits, amounts, dates, phone numbers and Latin words."""

from __future__ import annotations

import pytest

from agent.zh_text import cardinal, normalize_zh, spell


@pytest.mark.parametrize("n, words", [
    (0, "零"), (2, "二"), (10, "十"), (15, "十五"), (20, "二十"), (101, "一百零一"), (110, "一百一十"),
    (1005, "一千零五"), (2000, "两千"), (10005, "一万零五"), (10500, "一万零五百"), (12000, "一万两千"),
    (20000, "两万"), (100000, "十万"), (1010000, "一百零一万"), (100000000, "一亿"),
])
def test_cardinal_numbers(n, words):
    assert cardinal(n) == words


@pytest.mark.parametrize("text, spoken", [
    # money
    ("跨行转账每笔收取2元手续费", "跨行转账每笔收取两元手续费"),
    ("年费¥12.50", "年费十二点五元"),
    ("每节课120元", "每节课一百二十元"),
    ("最低存款$20", "最低存款二十美元"),
    ("共20,000元", "共两万元"),
    # dates
    ("2024年3月5日到期", "二零二四年三月五日到期"),
    ("2024-03-05到期", "二零二四年三月五日到期"),
    ("2025/12/1开课", "二零二五年十二月一日开课"),
    ("6月18号", "六月十八号"),
    # times
    ("营业时间9:00-17:00", "营业时间九点到十七点"),
    ("上午9:30开门", "上午九点三十分开门"),
    ("9:05出发", "九点零五分出发"),
    ("2:00前", "两点前"),
    # percentages, ranges, decimals
    ("年利率3.5%", "年利率百分之三点五"),
    ("5-10个工作日", "五到十个工作日"),
    ("圆周率3.14", "圆周率三点一四"),
    # phone numbers and card numbers: digit by digit, 1 is 幺 in phone numbers
    ("请拨打热线95588", "请拨打热线九五五八八"),
    ("客服电话400-820-8888", "客服电话四零零八二零八八八八"),
    ("手机13812345678", "手机幺三八幺二三四五六七八"),
    ("座机010-12345678", "座机零幺零幺二三四五六七八"),
    ("卡号6222021234567890", "卡号六二二二零二一二三四五六七八九零"),
    # Latin words in a Chinese sentence
    ("请打开 app", "请打开诶批批"),
    ("请到ATM机取款", "请到诶踢艾姆机取款"),
    ("请发email给我们", "请发电子邮件给我们"),
    ("连上wifi后重试", "连上无线网络后重试"),
    ("温度25℃", "温度二十五摄氏度"),
])
def test_normalised_for_speech(text, spoken):
    assert normalize_zh(text) == spoken


def test_nothing_to_read_is_left_as_digits_or_latin():
    out = normalize_zh("您的订单2024001在3-5天内送达，详情见 app 或拨打95588，费用¥2.5（约0.5%）")
    assert not any(c.isdigit() for c in out), out
    assert not any("a" <= c.lower() <= "z" for c in out), out


def test_long_english_words_kept_for_the_english_voice_or_spelled():
    assert normalize_zh("请下载 statement 查看", keep_english=True) == "请下载 statement 查看"
    assert normalize_zh("请下载 statement 查看") == "请下载" + spell("statement") + "查看"
    # short words and acronyms are spelled either way, lexicon words are said in Chinese
    assert normalize_zh("打开 app", keep_english=True) == "打开诶批批"
    assert normalize_zh("发 email", keep_english=True) == "发电子邮件"
