# Sphinx configuration of the course site: prepare.py copies it into the prepared sources (artifacts/site-src/),
# which build.sh then builds with sphinx-build.
# Everything the pages load is served from the site itself, so it works offline and from any static host.
import json
import os

from pygments.lexers import CSharpLexer
from pygments.token import Error, Text

project = "Diffusion models in C#"
author = "the course's authors"
copyright = "the course's authors, MIT licence"
extensions = ["nbsphinx", "myst_parser", "sphinx.ext.mathjax"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "furo"
html_title = "Diffusion models in C#"
html_static_path = ["_static"]
html_copy_source = False                  # the executed notebooks are large; the repository has the sources
html_show_sourcelink = False

# The notebooks ran before the build (build.sh); never run them here.
nbsphinx_execute = "never"
# Nothing on these pages needs require.js: the charts use a global Plotly (one shared plotly.js, below), and the kernel's
# own require.js probe is removed by prepare.py. Loading require.js would also make plotly.js define an anonymous module.
nbsphinx_requirejs_path = ""
nbsphinx_prolog = os.environ.get("COURSE_SITE_PROLOG", "")

# MathJax 2.7 from Debian's libjs-mathjax, copied (trimmed) into _static/mathjax by prepare.py; SVG output needs no fonts.
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS_SVG"
# Not None: nbsphinx then configures MathJax 2 (tex2jax) instead of 3. Math in headings also appears in the contents
# and the sidebar, outside the page body, so the whole page is processed (code and pre are skipped by MathJax).
mathjax2_config = {
    "tex2jax": {"ignoreClass": "tex2jax_ignore|mathjax_ignore"},
    "SVG": {"font": "TeX"},
    "showMathMenu": False,
    "messageStyle": "none",
}

myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header", "myst.xref_missing"]


class LenientCSharpLexer(CSharpLexer):
    """C# as Pygments lexes it, with the notebook directives (#r, #load, #!…) that it does not know taken as plain text
    instead of an error: Sphinx refuses to highlight a block with any error token."""

    name = "C# (notebook)"

    def get_tokens_unprocessed(self, text, *args):
        for index, token, value in super().get_tokens_unprocessed(text, *args):
            yield index, (Text if token is Error else token), value


def add_plotly(app, pagename, templatename, context, doctree):
    """plotly.js once, from _static, on the pages that draw charts (prepare.py lists them). In <head>: furo puts script
    files at the end of <body>, after the charts' own scripts, which would then fetch plotly.js from its CDN."""
    if pagename in app.config.html_context.get("plotly_pages", []):
        src = context["pathto"]("_static/plotly.min.js", 1)
        context["metatags"] = context.get("metatags", "") + f'\n<script src="{src}"></script>'



def setup(app):
    for alias in ("csharp", "c#", "C#", "cs"):
        app.add_lexer(alias, LenientCSharpLexer)
    # MathJax on every page, not only on pages with math of their own: contents entries taken from headings with math
    # appear on other pages too (the index, the sidebar), and would stay raw \( \) there.
    app.set_html_assets_policy("always")
    app.connect("html-page-context", add_plotly)


_pages = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_plotly_pages.json")
html_context = {"plotly_pages": json.load(open(_pages)) if os.path.exists(_pages) else []}
html_css_files = ["course.css"]
