"""Website opt-out kit: every written file is parsed back with a real or minimal parser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.robotparser import RobotFileParser

import pytest

from sfumato.cli import main as cli_main
from sfumato.optout.site import KIT_FILES, SiteKitOptions, load_crawler_list, request_agents, write_site_kit

# real User-Agent headers (as published by the operators) used to check the optional 403 rules
REAL_UAS = {
    "GPTBot": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.1; +https://openai.com/gptbot)",
    "ClaudeBot": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
    "CCBot": "CCBot/2.0 (https://commoncrawl.org/faq/)",
    "Googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Bingbot": "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Applebot": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                "Version/17.4 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
    "facebookexternalhit": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "OAI-SearchBot": "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; OAI-SearchBot/1.0; "
                     "+https://openai.com/searchbot",
}
BLOCKED_REAL = ("GPTBot", "ClaudeBot", "CCBot")


def _robots(path: Path) -> RobotFileParser:
    rp = RobotFileParser()
    rp.parse(path.read_text(encoding="utf-8").splitlines())
    return rp


def test_crawler_list_is_documented() -> None:
    data = load_crawler_list()
    assert data["updated"] == "2026-11-25"
    assert len(data["sources"]) >= 5 and all(s["url"].startswith("https://") for s in data["sources"])
    agents = {c["user_agent"]: c for c in data["crawlers"]}
    for ua in ("GPTBot", "ClaudeBot", "anthropic-ai", "CCBot", "Google-Extended", "Applebot-Extended",
               "Bytespider", "Meta-ExternalAgent", "Diffbot", "ImagesiftBot", "Omgilibot", "cohere-ai",
               "AI2Bot", "Timpibot"):
        assert agents[ua]["category"] == "training" and agents[ua]["block"] is True, ua
    for ua in ("OAI-SearchBot", "PerplexityBot", "Googlebot", "Bingbot", "Applebot", "YouBot"):
        assert agents[ua]["block"] is False, ua
    assert agents["ChatGPT-User"]["category"] == "user-fetch"
    assert all(len(c["purpose"]) > 30 for c in data["crawlers"]), "every decision needs its reason"


def test_kit_files_parse(tmp_path: Path) -> None:
    written = write_site_kit(tmp_path, SiteKitOptions(tdm_policy="https://artist.example/ai-policy"))
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == sorted(KIT_FILES)
    data = load_crawler_list()

    rp = _robots(tmp_path / "robots.txt")
    for c in data["crawlers"]:
        for path in ("/", "/gallery/heron.png"):
            assert rp.can_fetch(c["user_agent"], path) is (not c["block"]), (c["user_agent"], path)
    assert not rp.can_fetch("GPTBot", "/")
    assert rp.can_fetch("Googlebot", "/") and rp.can_fetch("Bingbot", "/art/")
    assert rp.can_fetch("SomeNewSearchEngine", "/")

    tdm = json.loads((tmp_path / ".well-known" / "tdmrep.json").read_text(encoding="utf-8"))
    assert isinstance(tdm, list) and len(tdm) == 1
    assert tdm[0] == {"location": "/", "tdm-reservation": 1, "tdm-policy": "https://artist.example/ai-policy"}

    ai_lines = [ln.strip() for ln in (tmp_path / "ai.txt").read_text(encoding="utf-8").splitlines()]
    rules = [ln for ln in ai_lines if ln and not ln.startswith("#")]
    assert rules[0] == "User-Agent: *"
    disallowed = {ln.split(":", 1)[1].strip() for ln in rules[1:]}
    assert all(ln.startswith("Disallow: ") for ln in rules[1:])
    assert {"*.jpg", "*.jpeg", "*.png", "*.webp", "*.gif", "*.psd", "*.mp4"} <= disallowed
    assert "/" not in disallowed, "by default ai.txt covers media only"

    readme = (tmp_path / "README.txt").read_text(encoding="utf-8")
    for name in KIT_FILES[:-1]:
        assert name in readme


def _nginx_statements(text: str) -> list[str]:
    """Minimal nginx config tokenizer: statements end with ';', blocks open with '{' and close with '}'."""
    body = "\n".join(ln.split("#", 1)[0] if not ln.lstrip().startswith("#") else "" for ln in text.splitlines())
    out, depth, buf = [], 0, ""
    in_quote = False
    for ch in body:
        if ch == '"':
            in_quote = not in_quote
        if not in_quote and ch in ";{}":
            stmt = " ".join(buf.split())
            if ch == "}":
                assert not stmt, f"statement without ';' before '}}': {stmt!r}"
                depth -= 1
                assert depth >= 0, "unbalanced '}'"
            else:
                out.append(stmt + ch)
                depth += ch == "{"
            buf = ""
        else:
            buf += ch
    assert not in_quote and depth == 0 and not buf.strip(), "unterminated statement, quote or block"
    return out


@pytest.mark.parametrize("deny", [False, True])
def test_nginx_and_apache_snippets(tmp_path: Path, deny: bool) -> None:
    write_site_kit(tmp_path, SiteKitOptions(deny_user_agents=deny))
    nginx = (tmp_path / "nginx-noai.conf").read_text(encoding="utf-8")
    stmts = _nginx_statements(nginx)
    assert 'add_header X-Robots-Tag "noai, noimageai" always;' in stmts
    assert 'add_header tdm-reservation "1" always;' in stmts
    ifs = [s for s in stmts if s.startswith("if ")]
    assert len(ifs) == int(deny)

    apache = (tmp_path / "apache-noai.conf").read_text(encoding="utf-8")
    lines = [ln.strip() for ln in apache.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert 'Header always set X-Robots-Tag "noai, noimageai"' in lines
    assert 'Header always set tdm-reservation "1"' in lines
    assert lines.count("<IfModule mod_headers.c>") == 1
    assert sum(ln.startswith("<IfModule") for ln in lines) == sum(ln == "</IfModule>" for ln in lines)
    assert any(ln.startswith("RewriteRule") for ln in lines) is deny

    if deny:
        m = re.search(r'~\* "([^"]+)"', ifs[0])
        a = re.search(r'RewriteCond "%\{HTTP_USER_AGENT\}" "([^"]+)" \[NC\]', apache)
        assert m and a and m.group(1) == a.group(1)
        rx = re.compile(m.group(1), re.IGNORECASE)
        for name, ua in REAL_UAS.items():
            assert bool(rx.search(ua)) is (name in BLOCKED_REAL), name
        assert "Google-Extended" not in m.group(1), "robots-only tokens never appear in User-Agent headers"
        assert set(request_agents(SiteKitOptions())) <= set(m.group(1).strip("()").split("|"))


def test_nginx_accepts_snippet(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    assert nginx is not None, "nginx not found: run `bash .ci/install-optout.sh` (installs Debian nginx-light)"
    write_site_kit(tmp_path / "kit", SiteKitOptions(deny_user_agents=True, tdm_policy="https://a.example/p"))
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\n"
        "events {}\n"
        f"http {{ access_log off; server {{ listen 127.0.0.1:18080; "
        f"include {tmp_path / 'kit' / 'nginx-noai.conf'}; }} }}\n",
        encoding="utf-8",
    )
    r = subprocess.run([nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_user_fetch_blocking_and_ai_txt_all(tmp_path: Path) -> None:
    write_site_kit(tmp_path, SiteKitOptions(block_user_fetch=True, ai_txt_block_all=True))
    rp = _robots(tmp_path / "robots.txt")
    assert not rp.can_fetch("ChatGPT-User", "/") and not rp.can_fetch("Claude-User", "/")
    assert rp.can_fetch("OAI-SearchBot", "/") and rp.can_fetch("Googlebot", "/")
    assert "Disallow: /" in (tmp_path / "ai.txt").read_text(encoding="utf-8").splitlines()


def test_refuses_to_overwrite_and_is_all_or_nothing(tmp_path: Path) -> None:
    (tmp_path / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n", encoding="utf-8")
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_site_kit(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["robots.txt"], "nothing may be written on refusal"
    assert (tmp_path / "robots.txt").read_text(encoding="utf-8").endswith("/private/\n")
    write_site_kit(tmp_path, overwrite=True)
    assert not _robots(tmp_path / "robots.txt").can_fetch("CCBot", "/")
    assert not [p for p in tmp_path.rglob(".*.tmp")], "no temp files left behind"


def test_options_validate_and_round_trip() -> None:
    opts = SiteKitOptions(tdm_policy="https://a.example/p", block_user_fetch=True)
    assert SiteKitOptions.from_dict(json.loads(json.dumps(opts.to_dict()))) == opts
    with pytest.raises(ValueError, match="http"):
        SiteKitOptions(tdm_policy="a.example/p")
    with pytest.raises(ValueError, match="unknown site-kit option"):
        SiteKitOptions.from_dict({"block_everything": True})


def test_cli(tmp_path: Path) -> None:
    assert cli_main(["optout-site", str(tmp_path / "kit"), "--tdm-policy", "https://a.example/p"]) == 0
    assert (tmp_path / "kit" / ".well-known" / "tdmrep.json").is_file()
    assert cli_main(["optout-site", str(tmp_path / "kit")]) == 2
    assert cli_main(["optout-site", str(tmp_path / "kit"), "--overwrite"]) == 0
    tdm = json.loads((tmp_path / "kit" / ".well-known" / "tdmrep.json").read_text(encoding="utf-8"))
    assert "tdm-policy" not in tdm[0]
