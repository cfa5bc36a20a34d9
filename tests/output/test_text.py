"""Attachment decoding (plain, HTML, RTF, PDF), resource text collection, and grep over it."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhirgate.errors import InvalidInput
from fhirgate.text.attachments import (
    MAX_DECODED_BYTES,
    attachment_text,
    extract_attachment,
    html_to_text,
    resource_texts,
)
from fhirgate.text.grep import Hit, grep_texts, safe_regex


def make_pdf(text: str) -> bytes:
    """A minimal one-page PDF with `text` in a Helvetica content stream, xref offsets computed."""
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


HTML = (
    "<html><head><title>t</title><style>p {color: red}</style><script>alert('x')</script></head>"
    "<body><h1>Discharge summary</h1><p>Patient stable &amp; alert.</p><ul><li>Metformin 500&nbsp;mg</li>"
    "<li>Lisinopril</li></ul><table><tr><td>BP</td><td>120/80</td></tr></table></body></html>"
)
RTF = (
    r"{\rtf1\ansi{\fonttbl\f0\fswiss Helvetica;}\f0\pard Patient reports {\b chest pain} since Monday."
    r"\par Follow up in 2 weeks.\par}"
)


def att(content_type: str, payload: bytes, **extra: Any) -> dict[str, Any]:
    return {"contentType": content_type, "data": base64.b64encode(payload).decode(), **extra}


def test_plain_text_charsets() -> None:
    assert attachment_text(att("text/plain", "Zoë\r\nline".encode())) == "Zoë\nline"
    assert attachment_text(att("text/plain; charset=ISO-8859-1", "Zoë".encode("latin-1"))) == "Zoë"
    assert attachment_text(att('text/plain; charset="utf-16"', "Zoë".encode("utf-16"))) == "Zoë"
    assert attachment_text(att("text/plain", b"ok \xff\xfe bad")) == "ok \ufffd\ufffd bad"
    assert attachment_text(att("text/plain; charset=no-such-charset", b"fallback")) == "fallback"
    assert attachment_text(att("text/markdown", b"# Title")) == "# Title"


def test_html_to_text() -> None:
    text = attachment_text(att("text/html; charset=utf-8", HTML.encode()))
    assert text is not None
    assert "alert(" not in text
    assert "color" not in text
    lines = text.split("\n")
    assert "Discharge summary" in lines
    assert "Patient stable & alert." in lines
    assert "Metformin 500\xa0mg" in lines or "Metformin 500 mg" in lines
    assert "Lisinopril" in lines
    assert "BP 120/80" in lines
    assert html_to_text("<div>a<br/>b</div>") == "a\nb"
    assert html_to_text("<p>unclosed <b>tags") == "unclosed tags"


def test_rtf() -> None:
    text = attachment_text(att("text/rtf", RTF.encode()))
    assert text is not None
    assert "Patient reports chest pain since Monday." in text
    assert "Follow up in 2 weeks." in text
    assert "fonttbl" not in text
    assert "Helvetica" not in text
    assert attachment_text(att("application/rtf", RTF.encode())) == text


def test_pdf() -> None:
    text = attachment_text(att("application/pdf", make_pdf("HbA1c 7.2 percent on follow-up")))
    assert text == "HbA1c 7.2 percent on follow-up"


@pytest.mark.parametrize(
    "payload",
    [b"not a pdf at all", b"%PDF-1.4\n1 0 obj\n<<", make_pdf("truncated")[:150], b"%PDF-1.4\n" + b"\x00" * 500],
)
def test_broken_pdf_gives_none_with_reason(payload: bytes) -> None:
    result = extract_attachment(att("application/pdf", payload))
    assert result.text in (None, "")
    if result.text is None:
        assert result.reason == "pdf could not be read"


@pytest.mark.parametrize(
    ("attachment", "reason"),
    [
        (att("image/png", b"\x89PNG"), "unsupported content type"),
        ({"contentType": "text/plain"}, "no inline data"),
        ({"contentType": "text/plain", "url": "Binary/1"}, "no inline data"),
        ({"contentType": "text/plain", "data": "@@not base64@@"}, "data is not valid base64"),
        ({"contentType": "text/plain", "data": "QUJ"}, "data is not valid base64"),
        ({"data": "QUJD"}, "unsupported content type"),
        (att("text/plain", b"x" * (MAX_DECODED_BYTES + 1)), "attachment too large"),
    ],
)
def test_unreadable_attachments(attachment: dict[str, Any], reason: str) -> None:
    result = extract_attachment(attachment)
    assert result.text is None
    assert result.reason == reason


def test_base64_with_line_breaks() -> None:
    encoded = base64.encodebytes(b"wrapped " * 40).decode()
    assert "\n" in encoded
    assert attachment_text({"contentType": "text/plain", "data": encoded}) == ("wrapped " * 40).strip()


def _document() -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "id": "doc1",
        "meta": {"tag": [{"system": "http://x", "code": "t", "display": "meta display"}]},
        "text": {"status": "generated", "div": "<div xmlns='http://www.w3.org/1999/xhtml'><p>Narrative here</p></div>"},
        "status": "current",
        "type": {
            "coding": [{"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}],
            "text": "Discharge summary",
        },
        "subject": {"reference": "Patient/p1", "display": "Jane Doe"},
        "description": "Inpatient stay",
        "content": [
            {"attachment": att("text/html", HTML.encode(), title="Summary")},
            {"attachment": att("text/rtf", RTF.encode())},
            {"attachment": att("application/pdf", make_pdf("HbA1c 7.2 percent"))},
            {"attachment": att("image/png", b"\x89PNG")},
        ],
        "note": [{"text": "Called patient about results", "authorString": "Nurse Ratched"}],
    }


def test_resource_texts_paths_and_content() -> None:
    texts = dict(resource_texts(_document()))
    assert texts["text.div"] == "Narrative here"
    assert texts["type.text"] == "Discharge summary"
    assert "type.coding[0].display" not in texts  # same as the concept's text
    assert texts["subject.display"] == "Jane Doe"
    assert texts["description"] == "Inpatient stay"
    assert "Metformin" in texts["content[0].attachment"]
    assert "chest pain" in texts["content[1].attachment"]
    assert texts["content[2].attachment"] == "HbA1c 7.2 percent"
    assert texts["content[0].attachment.title"] == "Summary"
    assert texts["note[0].text"] == "Called patient about results"
    assert texts["note[0].authorString"] == "Nurse Ratched"
    joined = "\n".join(texts.values())
    for absent in ("Patient/p1", "http://loinc.org", "18842-5", "meta display", "PGh0bWw", "current"):
        assert absent not in joined, absent


def test_grep_over_document_attachments() -> None:
    texts = resource_texts(_document())
    hits = grep_texts(texts, "chest PAIN")
    assert [h.path for h in hits] == ["content[1].attachment"]
    assert "chest pain" in hits[0].snippet
    assert [h.path for h in grep_texts(texts, "hba1c")] == ["content[2].attachment"]
    regex_hits = grep_texts(texts, r"metformin\s+\d+", regex=True)
    assert [h.path for h in regex_hits] == ["content[0].attachment"]


def test_grep_literal_snippets_offsets_and_limits() -> None:
    text = "x" * 200 + " Hemoglobin A1c (HbA1c) 7.2 % " + "y" * 200
    hits = grep_texts([("p", text)], "a1c (hba1c)", context_chars=10)
    assert hits == [Hit("p", "…emoglobin A1c (HbA1c) 7.2 % yyy…", 212)]
    assert text[hits[0].start :].lower().startswith("a1c (hba1c)")
    many = [("a", "ab " * 100), ("b", "ab")]
    assert len(grep_texts(many, "AB", max_hits=7)) == 7
    assert len(grep_texts(many, "ab", max_hits=200)) == 101
    assert grep_texts([("a", "short")], "short", context_chars=0) == [Hit("a", "short", 0)]
    assert grep_texts([("a", "abc")], ".*") == []  # literal by default: no regex meaning
    assert grep_texts([("a", "line one\nline two")], "one", context_chars=50)[0].snippet == "line one line two"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"pattern": ""}, "pattern"),
        ({"pattern": "   "}, "pattern"),
        ({"pattern": "x" * 201}, "pattern"),
        ({"pattern": "x", "context_chars": -1}, "context_chars"),
        ({"pattern": "x", "context_chars": 10_000}, "context_chars"),
        ({"pattern": "x", "max_hits": 0}, "max_hits"),
        ({"pattern": "x", "max_hits": 10_000}, "max_hits"),
        ({"pattern": "x", "max_hits": True}, "max_hits"),
        ({"pattern": "(unclosed", "regex": True}, "pattern"),
        ({"pattern": "x" * 101, "regex": True}, "pattern"),
    ],
)
def test_grep_bad_arguments(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidInput) as err:
        grep_texts([("a", "text")], **kwargs)
    assert err.value.param == param


@pytest.mark.parametrize(
    "pattern",
    [
        r"(a+)+$",
        r"(a|aa)*b",
        r"(\w+\s?)*$",
        r"(.*a){12}",
        r"(a|b)+",
        r"(x+x+)+y",
        r"(a)\1",
        r"(?=a)a",
        r"(?<!a)b",
        r"(?P<n>a)",
        r"(?i)a",
        r"a*+",
        r"a++",
        r"a{1,1000}",
        r"a{5,2}",
        r".*.*.*.*z",
        r"x*",
        r"(|a)",
        r"\p{L}",
        r"[a",
        r"a)",
        r"\\" + "\\",
    ],
)
def test_unsafe_or_invalid_regex_rejected(pattern: str) -> None:
    with pytest.raises(InvalidInput) as err:
        safe_regex(pattern)
    assert err.value.param == "pattern"


@pytest.mark.parametrize(
    ("pattern", "text", "found"),
    [
        (r"hb\s*a1c", "HbA1c and Hb A1c", ["HbA1c", "Hb A1c"]),
        (r"\d+(\.\d+)? ?mg", "take 2.5 mg then 10mg", ["2.5 mg", "10mg"]),
        (r"(?:foo|bar)baz", "FOOBAZ barbaz", ["FOOBAZ", "barbaz"]),
        (r"^line", "line a\nline b\nnot line", ["line", "line"]),
        (r"a{2,}", "a aa aaaa", ["aa", "aaaa"]),
        (r"[{}]x", "{x}x", ["{x", "}x"]),
    ],
)
def test_safe_regex_matches(pattern: str, text: str, found: list[str]) -> None:
    hits = grep_texts([("t", text)], pattern, regex=True, context_chars=0)
    assert [h.snippet.strip("…") for h in hits] == found


def test_regex_does_not_cross_lines_and_dedupes_windows() -> None:
    assert grep_texts([("t", "start\nend")], r"start.end", regex=True) == []
    long_line = ("filler " * 100) + "needle" + (" filler" * 100)
    hits = grep_texts([("t", long_line)], r"needle", regex=True)
    assert len(hits) == 1
    assert long_line[hits[0].start :].startswith("needle")


@pytest.mark.parametrize("pattern", [r".*.*.*z", r"\w*\s*\w*!", r"(?:a|b|c|d|e)x"])
def test_catastrophic_patterns_are_bounded(pattern: str) -> None:
    text = ("a" * 5_000 + "\n") * 200 + "a" * 200_000
    started = time.perf_counter()
    param = None
    try:
        grep_texts([("t", text)], pattern, regex=True)
    except InvalidInput as err:
        param = err.param
    assert param in (None, "pattern")
    assert time.perf_counter() - started < 3.0


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab()|*+?{}[]^$.\\,0123456789dws:=!<>-", max_size=30))
def test_any_pattern_is_accepted_or_rejected_cleanly(pattern: str) -> None:
    param = None
    try:
        grep_texts([("t", "ab" * 200 + "\n" + "a" * 300)], pattern, regex=True, max_hits=5)
    except InvalidInput as err:  # anything else (re.error, RecursionError...) fails the test
        param = err.param
    assert param in (None, "pattern")


@pytest.mark.shared
def test_synthea_notes_are_searchable(synthea_dir: Path) -> None:
    path = sorted(synthea_dir.glob("*.json"))[0]
    documents = [
        e["resource"]
        for e in orjson.loads(path.read_bytes())["entry"]
        if e["resource"]["resourceType"] == "DocumentReference"
    ]
    assert documents
    texts = [t for doc in documents[:10] for t in resource_texts(doc)]
    hits = grep_texts(texts, "chief complaint", max_hits=200)
    assert len(hits) == 10
    assert all(h.path == "content[0].attachment" for h in hits)
    assert grep_texts(texts, r"#\s+medications", regex=True, max_hits=3)
