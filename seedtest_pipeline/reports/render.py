"""Rendering a student's data object: PDF with typst, HTML with Jinja2, a PNG of the first page.

The templates are files an analyst edits (templates/report.typ, templates/report.html.j2). The
typst compiler is built once from the template's path and reused (about 4 ms per PDF); the data
goes in as JSON through sys_inputs. Fonts come only from the koreanize-matplotlib wheel
(NanumGothic, with Hangul) and system fonts are ignored, so every machine renders the same bytes;
`timestamp=0` keeps the PDF free of the clock. Any typst warning (an unknown font, a missing
glyph) is an error: a report must never show empty boxes.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jinja2
import typst
from markupsafe import Markup

TEMPLATES = Path(__file__).parent / "templates"
TYPST_TEMPLATE = "report.typ"
HTML_TEMPLATE = "report.html.j2"
# PDF/UA-1: a tagged, accessible PDF (structure tree, language, title, alt text); typst refuses
# to write one that breaks the standard (an image without alt, a glyph the font lacks).
PDF_STANDARDS = ["ua-1"]


class ReportRenderError(RuntimeError):
    """A template could not turn a data object into a document (the message names the cause)."""


def font_dir() -> Path:
    """NanumGothic's folder inside the koreanize-matplotlib wheel (found without importing it:
    its import loads matplotlib)."""
    spec = importlib.util.find_spec("koreanize_matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise ReportRenderError("koreanize-matplotlib is not installed: it ships the reports' Hangul fonts")
    fonts = Path(next(iter(spec.submodule_search_locations))) / "fonts"
    if not any(fonts.glob("NanumGothic*.ttf")):
        raise ReportRenderError(f"no NanumGothic*.ttf in {fonts}")
    return fonts


class ReportRenderer:
    """The two templates, loaded once; not shared between threads (the compiler holds state)."""

    def __init__(self, template_dir: Path = TEMPLATES):
        self.template_dir = Path(template_dir)
        typst_path = self.template_dir / TYPST_TEMPLATE
        if not typst_path.is_file():
            raise ReportRenderError(f"typst template not found: {typst_path}")
        self._compiler = typst.Compiler(
            str(typst_path), root=str(self.template_dir), font_paths=[str(font_dir())], ignore_system_fonts=True
        )
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.template_dir),
            autoescape=True,  # user ids and topic names are data: never markup
            undefined=jinja2.StrictUndefined,  # a misspelt field fails loudly instead of printing nothing
            keep_trailing_newline=True,
        )
        try:
            self._html = environment.get_template(HTML_TEMPLATE)
        except jinja2.TemplateError as error:
            raise ReportRenderError(f"{HTML_TEMPLATE}: {error}") from error

    @staticmethod
    def data_json(data: dict) -> str:
        return json.dumps(data, ensure_ascii=False, sort_keys=True, allow_nan=False)

    def pdf(self, data_json: str) -> bytes:
        return self._typst(data_json, format="pdf", pdf_standards=PDF_STANDARDS)

    def png(self, data_json: str, ppi: int = 48) -> bytes:
        """The first page as PNG (a thumbnail for the run's metadata)."""
        pages = self._typst(data_json, format="png", ppi=ppi)
        return pages if isinstance(pages, bytes) else pages[0]

    def html(self, data: dict) -> bytes:
        charts = {name: Markup(svg) for name, svg in data["charts"].items()}  # drawn and escaped by charts.py
        try:
            return self._html.render(report=data, charts=charts).encode("utf-8")
        except jinja2.TemplateError as error:
            raise ReportRenderError(f"{HTML_TEMPLATE}: {error}") from error

    def _typst(self, data_json: str, **options) -> bytes | list[bytes]:
        try:
            output, warnings = self._compiler.compile_with_warnings(
                sys_inputs={"data": data_json}, timestamp=0, **options
            )
        except typst.TypstError as error:
            raise ReportRenderError(f"{TYPST_TEMPLATE}: {error}") from error
        if warnings:
            raise ReportRenderError(f"{TYPST_TEMPLATE}: " + "; ".join(str(w) for w in warnings))
        return output
