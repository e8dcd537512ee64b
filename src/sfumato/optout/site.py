"""Website opt-out kit: robots.txt, ai.txt, TDMRep and server header snippets.

Signals written, each a published convention:

* ``robots.txt`` -- Robots Exclusion Protocol (RFC 9309): one group disallowing the AI-training
  crawlers listed in ``sfumato/data/ai_crawlers.json`` (with each decision's reason), then
  ``User-agent: *`` / ``Allow: /`` so search engines keep indexing the site;
* ``ai.txt`` -- Spawning's ai.txt convention: disallow image and media file types for AI training;
* ``.well-known/tdmrep.json`` -- W3C TDM Reservation Protocol (TDMRep, Community Group Final Report
  2024): ``tdm-reservation: 1`` for the whole site, the machine-readable reservation of Art. 4(3) of
  Directive (EU) 2019/790;
* ``nginx-noai.conf`` / ``apache-noai.conf`` -- response headers ``X-Robots-Tag: noai, noimageai``
  (DeviantArt's directives, honoured e.g. by img2dataset) and TDMRep's ``tdm-reservation: 1`` header,
  optionally a 403 for the listed training crawlers' user agents.

None of this is enforcement against a crawler that ignores it; the README says so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from sfumato.io.atomic import write_bytes_atomic
from sfumato.optout.dict_options import DictOptions

CATEGORIES = ("training", "user-fetch", "search", "preview")
IMAGE_MEDIA_EXTENSIONS = (
    # raster / vector images and artists' working files
    "jpg", "jpeg", "png", "gif", "webp", "avif", "heic", "heif", "jxl", "tif", "tiff", "bmp", "svg",
    "psd", "kra", "xcf", "clip", "procreate",
    # video and audio
    "mp4", "webm", "mov", "avi", "mkv", "mp3", "wav", "flac", "ogg", "m4a", "aac",
)
KIT_FILES = (
    "robots.txt",
    "ai.txt",
    ".well-known/tdmrep.json",
    "nginx-noai.conf",
    "apache-noai.conf",
    "README.txt",
)


@dataclass(frozen=True, kw_only=True)
class SiteKitOptions(DictOptions):
    """Choices for :func:`write_site_kit`.

    ``tdm_policy``: optional URL of a policy/licence page (TDMRep ``tdm-policy``).
    ``block_user_fetch``: also disallow assistants fetching pages on a user's request.
    ``deny_user_agents``: make the server snippets answer 403 to the blocked user agents.
    ``ai_txt_block_all``: in ai.txt also disallow ``/`` (all content, text included), not only media.
    """

    OPTIONS_NAME: ClassVar[str] = "site-kit"

    tdm_policy: str | None = None
    block_user_fetch: bool = False
    deny_user_agents: bool = False
    ai_txt_block_all: bool = False

    def __post_init__(self) -> None:
        if self.tdm_policy is not None and not re.match(r"^https?://[^\s\"']+$", self.tdm_policy):
            raise ValueError(
                f"tdm_policy={self.tdm_policy!r} must be an http(s) URL without spaces or quotes, "
                "e.g. https://example.com/ai-policy"
            )


@lru_cache(maxsize=1)
def _load_raw() -> str:
    from importlib.resources import files

    return files("sfumato").joinpath("data/ai_crawlers.json").read_text(encoding="utf-8")


def load_crawler_list() -> dict[str, Any]:
    """The maintained crawler list (``updated``, ``sources``, ``crawlers`` with ``purpose`` per entry)."""
    data = json.loads(_load_raw())
    seen: set[str] = set()
    for c in data["crawlers"]:
        for key in ("user_agent", "operator", "category", "block", "purpose"):
            if key not in c:
                raise ValueError(f"ai_crawlers.json entry {c!r} lacks {key!r}")
        if c["category"] not in CATEGORIES:
            raise ValueError(f"ai_crawlers.json: {c['user_agent']} has unknown category {c['category']!r}")
        if c["block"] != (c["category"] == "training"):
            raise ValueError(f"ai_crawlers.json: {c['user_agent']}: block must be true exactly for 'training'")
        if not re.fullmatch(r"[A-Za-z0-9._-]+", c["user_agent"]):
            raise ValueError(f"ai_crawlers.json: user agent {c['user_agent']!r} is not a robots.txt product token")
        low = c["user_agent"].lower()
        if low in seen:
            raise ValueError(f"ai_crawlers.json: duplicate user agent {c['user_agent']}")
        seen.add(low)
    return data


def blocked_agents(options: SiteKitOptions) -> list[str]:
    cats = {"training"} | ({"user-fetch"} if options.block_user_fetch else set())
    return [c["user_agent"] for c in load_crawler_list()["crawlers"] if c["category"] in cats]


def request_agents(options: SiteKitOptions) -> list[str]:
    """Blocked agents that actually send a User-Agent header (robots-only control tokens removed)."""
    token_only = {c["user_agent"] for c in load_crawler_list()["crawlers"] if c.get("token_only")}
    return [a for a in blocked_agents(options) if a not in token_only]


def allowed_agents(options: SiteKitOptions) -> list[str]:
    blocked = set(blocked_agents(options))
    return [c["user_agent"] for c in load_crawler_list()["crawlers"] if c["user_agent"] not in blocked]


def _header(comment: str = "#") -> str:
    from sfumato._version import __version__

    data = load_crawler_list()
    return (
        f"{comment} Generated by Sfumato {__version__} (sfumato optout-site) from its AI-crawler list "
        f"updated {data['updated']}.\n"
    )


def _kit_text(lines: list[str]) -> str:
    """A kit file: the generated-by comment line, then ``lines``, newline-terminated."""
    return "\n".join([_header().rstrip("\n"), *lines, ""])


def render_robots_txt(options: SiteKitOptions) -> str:
    data = load_crawler_list()
    by_agent = {c["user_agent"]: c for c in data["crawlers"]}
    lines = [
        "# Blocks crawlers that collect content for AI/ML training; search engines stay allowed.",
        "# robots.txt is a request (RFC 9309): well-behaved crawlers follow it, others may not.",
        "",
    ]
    for ua in blocked_agents(options):
        c = by_agent[ua]
        lines.append(f"# {ua} ({c['operator']}, {c['category']}): {c['purpose']}")
    lines.append("")
    lines += [f"User-agent: {ua}" for ua in blocked_agents(options)]
    lines += ["Disallow: /", ""]
    lines.append("# Everyone else, search engines included (e.g. " + ", ".join(allowed_agents(options)[:6])
                 + "), may crawl.")
    lines += ["User-agent: *", "Allow: /"]
    return _kit_text(lines)


def render_ai_txt(options: SiteKitOptions) -> str:
    lines = [
        "# ai.txt (Spawning convention): media on this site may not be used to train AI models.",
        "",
        "User-Agent: *",
    ]
    lines += [f"Disallow: *.{ext}" for ext in IMAGE_MEDIA_EXTENSIONS]
    if options.ai_txt_block_all:
        lines.append("Disallow: /")
    return _kit_text(lines)


def render_tdmrep(options: SiteKitOptions) -> str:
    entry: dict[str, Any] = {"location": "/", "tdm-reservation": 1}
    if options.tdm_policy:
        entry["tdm-policy"] = options.tdm_policy
    return json.dumps([entry], indent=2) + "\n"


def _ua_regex(agents: list[str]) -> str:
    # tokens are [A-Za-z0-9._-]; only "." is special, written as "[.]" (no backslashes: nginx and Apache
    # treat backslashes inside quoted strings differently)
    return "(" + "|".join(a.replace(".", "[.]") for a in agents) + ")"


def _server_snippet(options: SiteKitOptions, *, intro: list[str], header: str, after_headers: list[str],
                    deny: list[str]) -> str:
    """The response headers in one server's syntax (``header`` formats one ``name``/``value``), then,
    with ``deny_user_agents``, the ``deny`` lines answering 403 to the blocked crawlers."""
    headers = [("X-Robots-Tag", "noai, noimageai"), ("tdm-reservation", "1")]
    if options.tdm_policy:
        headers.append(("tdm-policy", options.tdm_policy))
    lines = [*intro, *(header.format(name=n, value=v) for n, v in headers), *after_headers]
    if options.deny_user_agents:
        lines += deny
    return _kit_text(lines)


def render_nginx(options: SiteKitOptions) -> str:
    return _server_snippet(
        options,
        intro=[
            "# Include inside a server { } block:  include /etc/nginx/snippets/nginx-noai.conf;",
            "# Note: nginx drops inherited add_header lines in any location that has its own add_header;",
            "# include this file in such locations as well.",
        ],
        header='add_header {name} "{value}" always;',
        after_headers=[],
        deny=[
            "# Refuse the listed AI-training crawlers outright (they may still lie about their name).",
            f'if ($http_user_agent ~* "{_ua_regex(request_agents(options))}") {{',
            "    return 403;",
            "}",
        ],
    )


def render_apache(options: SiteKitOptions) -> str:
    return _server_snippet(
        options,
        intro=[
            "# Put in the <VirtualHost> or an .htaccess file (needs mod_headers; the 403 part needs mod_rewrite).",
            "<IfModule mod_headers.c>",
        ],
        header='    Header always set {name} "{value}"',
        after_headers=["</IfModule>"],
        deny=[
            "<IfModule mod_rewrite.c>",
            "    RewriteEngine On",
            f'    RewriteCond "%{{HTTP_USER_AGENT}}" "{_ua_regex(request_agents(options))}" [NC]',
            "    RewriteRule .* - [F,L]",
            "</IfModule>",
        ],
    )


def render_readme(options: SiteKitOptions) -> str:
    data = load_crawler_list()
    blocked = blocked_agents(options)
    src = "\n".join(f"  - {s['name']}: {s['url']}" for s in data["sources"])
    return f"""Sfumato website opt-out kit
===========================
{_header('').strip()}

These files tell AI-training crawlers and dataset builders that the works on your site are not to be
used for training. They are requests and legal reservations, not technical locks: a crawler that
ignores them is not stopped by them. Combine them with embedded metadata (sfumato sign / protect)
and, for images you publish, Sfumato's perturbation protection.

robots.txt
  Copy to the root of your site (https://your.site/robots.txt). Disallows {len(blocked)} AI-training
  crawlers and tokens ({', '.join(blocked[:5])}, ...) and allows everyone else, search engines
  included, so your site stays findable. Each blocked agent has a comment explaining why. If you already have a
  robots.txt, merge the "Disallow" group into it by hand.

ai.txt
  Copy to the site root (https://your.site/ai.txt). Spawning's ai.txt convention: disallows image,
  video and audio file types for AI training{' and, with this kit, all content ("Disallow: /")' if options.ai_txt_block_all else ''}.

.well-known/tdmrep.json
  Copy to https://your.site/.well-known/tdmrep.json. W3C TDM Reservation Protocol: "tdm-reservation": 1
  reserves text-and-data-mining rights for the whole site (location "/"), the machine-readable opt-out
  of Article 4(3) of the EU DSM Directive 2019/790.{' "tdm-policy" points to ' + options.tdm_policy + '.' if options.tdm_policy else ' Add "tdm-policy" with a licence URL if you offer licences (sfumato optout-site --tdm-policy URL).'}

nginx-noai.conf
  For nginx: put it in /etc/nginx/snippets/ and "include" it in each server block (and in locations
  that define their own add_header). Sends "X-Robots-Tag: noai, noimageai" and "tdm-reservation: 1"
  with every response{'; also answers 403 to the blocked crawler user agents' if options.deny_user_agents else ''}. Test with
  "nginx -t" and reload.

apache-noai.conf
  For Apache httpd 2.4 with mod_headers: include it in the VirtualHost or paste it into .htaccess.
  Same headers as the nginx snippet{'; the mod_rewrite part answers 403 to the blocked user agents' if options.deny_user_agents else ''}.

Crawler list (updated {data['updated']}) and its sources:
{src}
Search crawlers (Googlebot, Bingbot, DuckDuckBot, Applebot, OAI-SearchBot, PerplexityBot...) are
deliberately left allowed. Assistants fetching a page on a user's request (ChatGPT-User, Claude-User,
Perplexity-User...) are allowed unless you pass --block-user-fetch.
"""


def site_kit_files(options: SiteKitOptions | None = None) -> dict[str, str]:
    """Relative path -> text for every file of the kit."""
    options = options or SiteKitOptions()
    return {
        "robots.txt": render_robots_txt(options),
        "ai.txt": render_ai_txt(options),
        ".well-known/tdmrep.json": render_tdmrep(options),
        "nginx-noai.conf": render_nginx(options),
        "apache-noai.conf": render_apache(options),
        "README.txt": render_readme(options),
    }


def write_site_kit(directory: Path | str, options: SiteKitOptions | None = None, *,
                   overwrite: bool = False) -> list[Path]:
    """Write the kit into ``directory``; refuses (before writing anything) to replace existing files
    unless ``overwrite=True``. Returns the written paths."""
    d = Path(directory).expanduser()
    if d.exists() and not d.is_dir():
        raise NotADirectoryError(f"{d} is a file; give a folder for the opt-out kit")
    files = site_kit_files(options)
    existing = [rel for rel in files if (d / rel).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{d} already has {', '.join(existing)}; pass --overwrite (overwrite=True) to replace them, "
            "or write the kit to an empty folder and merge by hand"
        )
    written = []
    for rel, text in files.items():
        path = d / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, text.encode("utf-8"), mode=0o644)
        written.append(path)
    return written
