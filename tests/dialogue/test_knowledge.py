"""Ingestion of Markdown, text, HTML, PDF and YAML FAQs; hybrid search; persistence."""

from __future__ import annotations

import pytest

from dialogue.knowledge import IngestError, KnowledgeIndex, build_index, ingest_document, keywords
from dialogue.language import detect_language


def make_pdf(text: str) -> bytes:
    """A minimal one-page PDF with ``text`` (built by hand: no PDF writer needed)."""
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def test_markdown_chunks_carry_titles(tmp_path):
    md = tmp_path / "fees.md"
    md.write_text("# Fees\n\n## Cards\nA replacement card costs 10 euros.\n\n## Cash\nWithdrawals are free at our machines.\n")
    chunks = ingest_document(md)
    assert chunks and all(c.source == "fees.md" and c.lang == "en" for c in chunks)
    joined = " ".join(c.text for c in chunks)
    assert "replacement card costs 10 euros" in joined
    assert any(c.title in ("Cards", "Fees") for c in chunks)


def test_html_drops_scripts_and_navigation():
    html = b"<html><head><title>T</title><script>var x=1</script></head><body><nav>Menu</nav><h1>Returns</h1><p>Returns are free within 30 days.</p></body></html>"
    chunks = ingest_document(html, "text/html", name="returns.html")
    text = " ".join(c.text for c in chunks)
    assert "Returns are free within 30 days." in text and "var x" not in text and "Menu" not in text


def test_pdf_upload_bytes():
    chunks = ingest_document(make_pdf("Safe deposit boxes cost 60 euros per year."), "application/pdf", name="boxes.pdf")
    assert "Safe deposit boxes cost 60 euros per year." in chunks[0].text


def test_plain_text_and_chinese():
    chunks = ingest_document("退货需要在三十天内完成。退款五个工作日到账。".encode(), name="r.txt")
    assert chunks[0].lang == "zh"


def test_faq_yaml():
    raw = b"lang: en\nfaq:\n  - question: Do you deliver on Sundays?\n    answer: No, we deliver Monday to Saturday.\n"
    (chunk,) = ingest_document(raw, name="faq.yaml")
    assert chunk.answer == "No, we deliver Monday to Saturday." and chunk.title == "Do you deliver on Sundays?"


def test_errors_are_one_clear_sentence(tmp_path):
    with pytest.raises(IngestError, match="unsupported document type"):
        ingest_document(b"x", name="slides.pptx")
    with pytest.raises(IngestError, match="document not found"):
        ingest_document(tmp_path / "missing.md")
    with pytest.raises(IngestError, match="PDF"):
        ingest_document(b"%PDF-1.4 broken", "application/pdf")


def test_stable_ids():
    a = ingest_document(b"Returns are free within 30 days.", "text/plain", name="r.txt")
    b = ingest_document(b"Returns are free within 30 days.", "text/plain", name="r.txt")
    assert [c.id for c in a] == [c.id for c in b]


def test_keywords_english_and_chinese():
    assert "open" in keywords("opening hours")  # stemmed
    assert "退货" in keywords("退货政策是什么")


def test_hybrid_search_and_relevance(embedder, tmp_path):
    chunks = (ingest_document(b"# Boxes\nSafe deposit boxes cost 60 euros per year.", "text/markdown", name="a.md")
              + ingest_document(b"# Loans\nPersonal loans start at 4.9 percent interest.", "text/markdown", name="b.md")
              + ingest_document("# 保险箱\n保险箱每年收费60欧元。".encode(), "text/markdown", name="c.md"))
    index = build_index(chunks, tmp_path / "idx")
    hit = index.search("How much is a safe deposit box?", language="en")[0]
    assert hit.relevant and hit.chunk.source == "a.md"
    assert not index.search("Who won the football match?", language="en")[0].relevant
    zh = index.search("保险箱多少钱", language=detect_language("保险箱多少钱"))[0]
    assert zh.relevant and zh.chunk.source == "c.md"
    # Persisted and loaded back by the agent: same answers.
    loaded = KnowledgeIndex.load(tmp_path / "idx", embedder)
    assert len(loaded) == 3 and loaded.search("interest rate of a personal loan", language="en")[0].chunk.source == "b.md"


def test_load_missing_index_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="ingest documents first"):
        KnowledgeIndex.load(tmp_path)
