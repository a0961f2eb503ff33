"""Render facts: what the email HTML, the text part and the web page must contain.

Everything is rendered from real issue files with the real templates, MJML and css-inline.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sample_issues import DIGEST, EXAMPLE, EXAMPLE_CONFIG, FIXTURES, REPO, SEED, seed_case

from newsletter.compose.checks import GMAIL_CLIP_BYTES, sized_html
from newsletter.compose.issue.parse import load_issue
from newsletter.compose.render import SLOT_PATTERN, Renderer, SlottedText
from newsletter.config import load_settings
from newsletter.errors import IssueError, RenderError

# Our full-size digest and our example always; the seed where it is (a `seed` case).
SAMPLES = {"digest": DIGEST, "example": EXAMPLE, "seed": SEED}


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    # The project's configuration (name, footer address) with no NEWSLETTER_* variables.
    return load_settings(EXAMPLE_CONFIG, environ={})


@pytest.fixture(scope="module")
def renderer(settings):
    return Renderer(settings)


@pytest.fixture(scope="module", params=["digest", "example", seed_case("seed")])
def sample(request, renderer, settings):
    path = SAMPLES[request.param]
    rendered = renderer.render(load_issue(path))
    email_html, email_text = rendered.preview(settings)
    return rendered, email_html, email_text


def all_links(issue):
    """Every URL an issue links to: sources, inline links in any text, related news."""
    urls = []
    for entry in issue.entries:
        urls += [s.url for s in entry.sources if s.url]
        inlines = (
            [entry.insight] + [i.text for i in entry.summary] + [c.text for i in entry.summary for c in i.children]
        )
        urls += [a.url for inline in inlines for a in inline.links()]
    urls += [link.url for link in issue.related if link.url]
    return urls


def hrefs(document: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'<a [^>]*href="([^"]*)"', document)]


# ---------------------------------------------------------------------------------------
# Content: titles and links, before and after the slots are filled
# ---------------------------------------------------------------------------------------


def test_every_entry_title_is_in_the_html_the_text_and_the_web_page(sample):
    rendered, email_html, email_text = sample
    titles = re.findall(r'<h2 class="nl-entry-title"[^>]*>(.*?)</h2>', email_html)
    assert [html.unescape(t) for t in titles] == [e.title for e in rendered.issue.entries]
    for entry in rendered.issue.entries:
        assert entry.title in email_text
        assert html.escape(entry.title, quote=False) in rendered.web_html


def test_every_link_is_in_the_filled_html_and_the_text_as_its_original_url(sample):
    rendered, email_html, email_text = sample
    urls = all_links(rendered.issue)
    assert len(urls) > 5
    links_in_html = hrefs(email_html)
    for url in urls:
        assert url in links_in_html, url
        assert url in email_text, url
        assert url in hrefs(rendered.web_html), url


def test_before_filling_every_link_is_a_slot_that_names_its_url(sample):
    rendered, _, _ = sample
    template = rendered.html.fill({name: f"%%nl:{name}%%" for name in rendered.html.slots})
    urls = all_links(rendered.issue)
    assert set(rendered.links) == set(urls)
    for url in urls:
        slot = f"%%nl:link:{rendered.links.index(url)}%%"
        assert f'href="{slot}"' in template, url
        assert f'href="{html.escape(url)}"' not in template, f"{url} is written out instead of slotted"
    assert sorted(n for n in set(rendered.html.slots) if n.startswith("link:")) == sorted(
        f"link:{i}" for i in range(len(rendered.links))
    )


def test_slots_survive_mjml_and_css_inlining_in_html_and_text(sample):
    rendered, email_html, email_text = sample
    assert {"view_url", "unsubscribe_url", "open_pixel"} <= set(rendered.html.slots)
    assert {"view_url", "unsubscribe_url"} <= set(rendered.text.slots)
    assert not any(s.startswith("link:") for s in rendered.text.slots), "the text part shows original URLs"
    # Nothing that looks like a slot was mangled on the way (percent-encoded, split, escaped).
    for part in (rendered.html.parts, rendered.text.parts):
        assert not any("%%nl" in p or "%25%25nl" in p or "nl:link" in p for p in part)
    assert "%%nl:" not in email_html and "%%nl:" not in email_text


def test_preview_fills_view_and_unsubscribe_urls_from_the_base_url(sample, settings):
    rendered, email_html, email_text = sample
    view = f"{settings.base_url}/issues/{rendered.issue.slug}"
    unsubscribe = f"{settings.base_url}/u/preview"
    for document in (hrefs(email_html), email_text):
        assert view in document and unsubscribe in document


def test_tracked_link_urls_and_the_open_pixel_fill_their_slots(sample):
    rendered, _, _ = sample
    tracked = [f"https://t.example.com/c/{i}?a=1&b=2" for i in range(len(rendered.links))]
    html_values, text_values = rendered.slot_values(
        unsubscribe_url="https://t.example.com/u/x",
        view_url="https://t.example.com/v",
        link_urls=tracked,
        open_pixel_url="https://t.example.com/o.gif?x=1&y=2",
    )
    filled = rendered.html.fill(html_values)
    links = hrefs(filled)
    assert set(tracked) <= set(links)
    assert not set(rendered.links) & set(links), "an original URL escaped click tracking"
    assert '<img src="https://t.example.com/o.gif?x=1&amp;y=2" width="1" height="1" alt=""' in filled
    assert filled.rindex("o.gif") > filled.rindex("https://t.example.com/u/x"), "the pixel sits at the end"
    assert rendered.text.fill(text_values).count("https://t.example.com/u/x") == 1


# ---------------------------------------------------------------------------------------
# The email's structure: what mail clients need
# ---------------------------------------------------------------------------------------


def test_responsive_and_dark_mode_media_queries_are_kept_with_their_important(sample):
    _, email_html, _ = sample
    styles = "".join(re.findall(r"<style[^>]*>(.*?)</style>", email_html, re.DOTALL))
    assert re.search(r"@media only screen and \(max-width: ?480px\)\s*\{[^@]*!important", styles)
    assert re.search(r"@media \(prefers-color-scheme: dark\)\s*\{[^@]*!important", styles)
    assert "mj-column-per-100" in styles  # MJML's own column rules


def test_color_scheme_meta_lang_and_preheader(sample):
    rendered, email_html, _ = sample
    assert '<meta name="color-scheme" content="light dark">' in email_html
    assert '<meta name="supported-color-schemes" content="light dark">' in email_html
    assert re.search(r'<html lang="zh-CN"', email_html)
    preheader = re.search(r'<div class="nl-preheader" style="display:none;[^"]*">([^<]*)', email_html)
    assert preheader and preheader.group(1).strip() == html.escape(rendered.issue.preheader, quote=False)
    assert email_html.index(preheader.group(0)) < email_html.index('class="nl-title"'), "the preheader comes first"
    assert f"<title>{html.escape(rendered.issue.subject, quote=False)}</title>" in email_html


def test_outlook_conditional_comments_are_kept(sample):
    _, email_html, _ = sample
    assert "<!--[if mso]>" in email_html
    assert "<!--[if mso | IE]>" in email_html
    assert "<!--[if !mso]><!-->" in email_html
    assert 'xmlns:o="urn:schemas-microsoft-com:office:office"' in email_html


def test_no_script_and_nothing_loaded_from_third_parties(sample):
    rendered, email_html, _ = sample
    for document in (email_html, rendered.web_html):
        assert "<script" not in document.lower()
        assert "@import" not in document, "a web font import: every open would call a third party"
        assert not re.search(r"<link[^>]+stylesheet", document)
    assert not [s for s in re.findall(r'<img [^>]*src="([^"]*)"', email_html) if not s.startswith("https://")]


def test_email_html_is_under_the_gmail_clip_as_received(sample, settings):
    rendered, email_html, _ = sample
    assert len(email_html.encode()) < GMAIL_CLIP_BYTES
    assert len(sized_html(rendered, settings).encode()) < GMAIL_CLIP_BYTES


def test_two_renders_are_byte_identical_across_renderer_instances(sample, settings):
    rendered, _, _ = sample
    again = Renderer(settings).render(load_issue(rendered.issue.path))
    assert again.html == rendered.html
    assert again.text == rendered.text
    assert again.web_html == rendered.web_html
    assert again.links == rendered.links


DIGEST_SCRIPT = """
import hashlib, sys
from newsletter.config import load_settings
from newsletter.compose.issue.parse import load_issue
from newsletter.compose.render import Renderer
rendered = Renderer(load_settings(sys.argv[2], environ={})).render(load_issue(sys.argv[1]))
document = "\\x00".join(rendered.html.parts + rendered.html.slots + rendered.text.parts + (rendered.web_html,))
print(hashlib.sha256(document.encode()).hexdigest())
"""


def test_two_processes_with_different_hash_seeds_render_the_same_bytes():
    path = DIGEST
    digests = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", DIGEST_SCRIPT, str(path), str(EXAMPLE_CONFIG)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1


# ---------------------------------------------------------------------------------------
# What an editor writes reaches the reader safely
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(renderer, settings):
    rendered = renderer.render(load_issue(FIXTURES / "unknown_blocks.md"))
    email_html, email_text = rendered.preview(settings)
    return rendered, email_html, email_text


def test_raw_html_in_an_issue_is_escaped_in_html_and_literal_in_text(mixed):
    rendered, email_html, email_text = mixed
    for document in (email_html, rendered.web_html):
        assert "<script" not in document
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in document
        assert "&lt;b&gt;粗体&lt;/b&gt;" in document
        assert "&lt;div class=" in document and "块级 HTML&lt;/div&gt;" in document
        assert '<div class="raw"' not in document and "<b>" not in document
        assert "条目 &lt;b&gt;标题&lt;/b&gt; 与 强调" in document
        assert "相关 &lt;一&gt;" in document
    # The text part is not HTML: the editor's characters appear as they wrote them.
    assert "<script>alert(1)</script>" in email_text
    assert "相关 <一>" in email_text


def test_inline_markdown_renders_as_bold_italic_code_and_link(mixed):
    rendered, email_html, email_text = mixed
    for document in (email_html, rendered.web_html):
        flat = flatten(document)
        assert "<strong>bold</strong>" in flat
        assert "<em>italic</em>" in flat
        assert "<code>code <x></code>" in flat
        assert '<a href="https://link.example.com/y">a link</a>' in flat
    assert "`code <x>`" in email_text
    assert "a link (https://link.example.com/y)" in email_text


class _Flattener(HTMLParser):
    KEEP = ("href", "src", "alt", "title", "start")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []

    def handle_starttag(self, tag, attrs):
        kept = "".join(f' {k}="{v}"' for k, v in sorted(attrs) if k in self.KEEP)
        self.out.append(f"<{tag}{kept}>")

    def handle_endtag(self, tag):
        self.out.append(f"</{tag}>")

    def handle_data(self, data):
        self.out.append(data)


def flatten(document: str) -> str:
    """Markup with only the attributes that carry content, and text unescaped: the same
    content compares equal however css-inline orders attributes or escapes quotes."""
    parser = _Flattener()
    parser.feed(document)
    parser.close()
    return "".join(parser.out)


def test_unknown_blocks_render_in_source_order(mixed):
    rendered, email_html, email_text = mixed
    marks = [
        '<img alt="头图：芯片" src="https://img.example.com/lead.png" title="封面">',
        "开头段落",
        '<div class="raw">块级 HTML</div>',
        "中文第一行中文第二行",
        "没有标签的一条",
        "After the summary, a paragraph.",
        "<h3>A sub-heading</h3>",
        '<ol start="3"><li>third</li><li>fourth</li></ol>',
        '<pre><code>print("<hello>")</code></pre>',
        "<blockquote><p>a plain quote</p></blockquote>",
    ]
    for document in (email_html, rendered.web_html):
        flat = flatten(document)
        positions = [flat.find(mark) for mark in marks]
        assert -1 not in positions, [m for m, p in zip(marks, positions, strict=False) if p == -1]
        assert positions == sorted(positions)
    text_marks = [
        "[头图：芯片: https://img.example.com/lead.png]",
        "开头段落",
        "核心洞察",
        "内容简介",
        "After the summary",
        "A sub-heading",
        "3. third",
        '    print("<hello>")',
        "> a plain quote",
    ]
    positions = [email_text.find(mark) for mark in text_marks]
    assert -1 not in positions and positions == sorted(positions)


def test_soft_breaks_join_cjk_without_a_space_in_every_part(mixed):
    rendered, email_html, email_text = mixed
    for document in (email_html, email_text, rendered.web_html):
        assert "中文第一行中文第二行，English words continue here" in document


def test_slot_mark_written_in_an_issue_is_refused_before_rendering(tmp_path):
    path = tmp_path / "slot.md"
    path.write_text(
        "# T 2026-01-01\n\n## E\n\n> **分类：** a\n> **来源：** b\n\n**核心洞察：** 写了 %%nl:unsubscribe_url%% 的文字\n",
        encoding="utf-8",
    )
    with pytest.raises(IssueError, match=r":8: '%%nl:' is reserved"):
        load_issue(path)


def test_language_from_front_matter_sets_lang_and_the_template_words(renderer, settings):
    rendered = renderer.render(load_issue(FIXTURES / "front_matter.md"))
    email_html, email_text = rendered.preview(settings)
    assert '<html lang="en"' in email_html and '<html lang="en"' in rendered.web_html
    assert "Key insight" in email_html and "Unsubscribe" in email_text
    assert "<title>Weekly: chips, policy and more</title>" in email_html
    assert "2026-02-14" in email_text


# ---------------------------------------------------------------------------------------
# Templates are the editor's
# ---------------------------------------------------------------------------------------


def test_one_overridden_template_replaces_only_that_part(tmp_path, settings):
    (tmp_path / "digest.txt.j2").write_text(
        "CUSTOM {{ issue.title }}\n{% for e in issue.entries %}* {{ e.title }}\n{% endfor %}{{ slot('unsubscribe_url') }}\n",
        encoding="utf-8",
    )
    (tmp_path / "inline.css").write_text(".nl-entry-title { color: #123456; }\n", encoding="utf-8")
    rendered = Renderer(settings, tmp_path).render(load_issue(EXAMPLE))
    email_html, email_text = rendered.preview(settings)
    assert email_text.startswith("CUSTOM 🤖 AI行业速递 - 2026年11月30日\n* 端侧大模型走进千元机")
    assert email_text.endswith("/u/preview\n")
    assert 'class="nl-entry-title" style="color: #123456;"' in email_html  # the editor's CSS, inlined
    assert "本期概览" in email_html and "本期概览" in rendered.web_html  # packaged templates for the rest


def test_templates_directory_from_the_configuration_file(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "digest.txt.j2").write_text("FROM CONFIG {{ slot('unsubscribe_url') }}\n", encoding="utf-8")
    (tmp_path / "newsletter.toml").write_text('[newsletter]\ntemplates = "mine"\n', encoding="utf-8")
    settings = load_settings(tmp_path / "newsletter.toml", environ={})
    _, email_text = Renderer(settings).render(load_issue(EXAMPLE)).preview(settings)
    assert email_text.startswith("FROM CONFIG http://127.0.0.1:8000/u/preview")


def test_missing_templates_directory_is_a_render_error(tmp_path, settings):
    with pytest.raises(RenderError, match="does not exist"):
        Renderer(settings, tmp_path / "nope")


@pytest.mark.parametrize(
    "template, name, line, words",
    [
        ("Hello\n{% if x %}\nno end\n", "digest.txt.j2", 3, "template syntax error"),
        ("Hello\n\n{{ nope.attribute }}\n", "digest.txt.j2", 3, "'nope' is undefined"),
        ("Hello\n{{ issue.title }}\n\n\n{{ issue.no_such_field }}\n", "digest.txt.j2", 5, "no_such_field"),
        (
            '{% extends "page.html.j2" %}\n{% block main %}\n{{ issue.entries[0].missing }}\n{% endblock %}\n',
            "digest.html.j2",
            3,
            "missing",
        ),
    ],
)
def test_broken_custom_template_error_names_the_template_and_line(tmp_path, settings, template, name, line, words):
    (tmp_path / name).write_text(template, encoding="utf-8")
    with pytest.raises(RenderError) as caught:
        Renderer(settings, tmp_path).render(load_issue(EXAMPLE))
    message = str(caught.value)
    assert "\n" not in message
    assert re.search(rf"{re.escape(name)}:{line}: ", message), message
    assert words in message


def test_broken_custom_mjml_names_the_template(tmp_path, settings):
    (tmp_path / "digest.mjml.j2").write_text(
        "<mjml><mj-body>\n<mj-section>\n<mj-column><mj-text>unclosed</mj-column>\n</mj-body></mjml>\n", encoding="utf-8"
    )
    with pytest.raises(RenderError, match=r"^digest\.mjml\.j2: MJML did not compile: ") as caught:
        Renderer(settings, tmp_path).render(load_issue(EXAMPLE))
    assert "\n" not in str(caught.value)


def test_slotted_text_round_trips_its_slots():
    text = SlottedText.parse("a %%nl:view_url%% b %%nl:link:12%% c")
    assert text.parts == ("a ", " b ", " c") and text.slots == ("view_url", "link:12")
    assert text.fill({"view_url": "V", "link:12": "L"}) == "a V b L c"
    assert text.fill_bytes({"view_url": b"V", "link:12": "é".encode()}) == "a V b é c".encode()
    assert SLOT_PATTERN.fullmatch("%%nl:open_pixel%%")


# ---------------------------------------------------------------------------------------
# What spam filters and screen readers read (issue 13); SpamAssassin itself scores the
# sent message in test_spamassassin.py
# ---------------------------------------------------------------------------------------


def test_preheader_is_hidden_by_its_box_not_by_a_colour_near_the_background(sample):
    _, email_html, _ = sample
    style = re.search(r'<div class="nl-preheader" style="([^"]*)"', email_html).group(1)
    assert "display:none" in style and "overflow:hidden" in style
    assert "color" not in style and "opacity" not in style


def test_no_inline_tag_ends_straight_into_cjk_text(sample):
    """SpamAssassin counts text that runs on across a tag with no space or ASCII punctuation
    between as HTML obfuscation (HTML.pm); our labels and the sources line keep a space."""
    rendered, email_html, _ = sample
    assert not re.search(r"</strong>[\u3000-\u9fff\uff00-\uffef]", email_html)
    labels = re.findall(r'<strong class="nl-label"[^>]*>([^<]*)</strong>(.)', email_html)
    items = [item for entry in rendered.issue.entries for item in entry.summary]
    items += [child for item in items for child in item.children]
    assert len(labels) == sum(1 for item in items if item.label) > 10
    assert all(label.endswith("：") and after == " " for label, after in labels), labels[:3]
    sources = re.findall(r'<p class="nl-sources"[^>]*>([^<]*)<', email_html)
    assert sources and all(text.startswith("来源： ") for text in sources)


def test_every_link_in_the_email_is_underlined(sample):
    _, email_html, _ = sample
    styles = re.findall(r'<a [^>]*?style="([^"]*)"', email_html)
    assert len(styles) == len(re.findall(r"<a ", email_html)) > 10
    assert all("text-decoration: underline" in style for style in styles)


def test_email_content_sits_in_a_main_landmark_labelled_with_the_title(sample):
    rendered, email_html, _ = sample
    body = email_html[email_html.index("<body") :]
    opened = re.search(r'<div role="main" aria-label="([^"]*)">', body)
    assert opened and html.unescape(opened.group(1)) == rendered.issue.title
    # Around the article MJML wraps the body in, holding everything to the end.
    assert body.index("<div", 1) == opened.start() < body.index('role="article"') < body.index('class="nl-title"')
    assert body.endswith("</div></div></body></html>")


# The renderer's own slots are found by a search for `%%nl-NONCE:` rather than a pattern
# compiled with each render's nonce; it must split exactly where such a pattern would.
_NONCE = "0f1e2d3c4b5a6978"
_FRAGMENTS = [
    f"%%nl-{_NONCE}:",
    "%%nl-ffffffffffffffff:",
    "%%nl:",
    "%%",
    "%",
    "link",
    ":",
    "3",
    "_",
    "x",
    "nl-",
    " <p>",
]


@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=24).map("".join))
@example(f"%%nl-{_NONCE}:link%%nl-{_NONCE}:x%%")  # a slot's closing %% begins no other slot
@hypothesis_settings(max_examples=400, deadline=None)
def test_rendered_slots_split_where_a_pattern_with_the_nonce_would(text: str) -> None:
    pieces = re.split(rf"%%nl-{_NONCE}:([a-z_]+(?::\d+)?)%%", text)
    split = SlottedText.rendered(text, _NONCE)
    assert (split.parts, split.slots) == (tuple(pieces[0::2]), tuple(pieces[1::2]))
