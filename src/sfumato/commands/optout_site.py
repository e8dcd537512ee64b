"""``sfumato optout-site``: write robots.txt, ai.txt, TDMRep and server snippets for a website."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfumato.commands import one_line_errors

HELP = ("Write a website opt-out kit into DIR: robots.txt (AI-training crawlers blocked, search allowed), "
        "ai.txt, .well-known/tdmrep.json, nginx/apache header snippets and a README.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="folder to write the kit into (created if missing)")
    p.add_argument("--overwrite", action="store_true", help="replace existing kit files in DIR")
    p.add_argument("--tdm-policy", default=None, metavar="URL", help="URL of your licensing/AI policy page")
    p.add_argument("--block-user-fetch", action="store_true",
                   help="also disallow assistants fetching pages on a user's request (ChatGPT-User, ...)")
    p.add_argument("--deny-user-agents", action="store_true",
                   help="server snippets answer 403 to the blocked crawlers' user agents")
    p.add_argument("--ai-txt-all", action="store_true", help="ai.txt disallows all content, not only media")


def _run(args: argparse.Namespace) -> int:
    from sfumato.optout.site import SiteKitOptions, write_site_kit

    opts = SiteKitOptions(tdm_policy=args.tdm_policy, block_user_fetch=args.block_user_fetch,
                          deny_user_agents=args.deny_user_agents, ai_txt_block_all=args.ai_txt_all)
    for path in write_site_kit(Path(args.dir), opts, overwrite=args.overwrite):
        print(path)
    print(f"see {Path(args.dir) / 'README.txt'} for where each file goes")
    return 0


run = one_line_errors(_run)
