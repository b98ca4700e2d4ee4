"""Fail on a broken link in the built book: every relative href and src of every
page must name a file of the book, and every #fragment an id on that page.

Usage: check_links.py BOOK_DIR
"""
import html.parser
import pathlib
import sys
import urllib.parse


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and "name" in attrs:
            self.ids.add(attrs["name"])
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append(attrs[key])


def main() -> int:
    book = pathlib.Path(sys.argv[1]).resolve()
    pages = {}
    for path in book.rglob("*.html"):
        page = Page()
        page.feed(path.read_text(encoding="utf-8"))
        pages[path] = page
    broken = []
    for path, page in pages.items():
        if path.name in ("print.html", "404.html", "toc.html"):
            continue  # generated: print.html repeats every page, 404 and toc link by site root
        for link in page.links:
            parsed = urllib.parse.urlsplit(link)
            if parsed.scheme or link.startswith("//"):
                continue
            target = (path.parent / urllib.parse.unquote(parsed.path)).resolve() if parsed.path else path
            if not target.exists():
                broken.append(f"{path.relative_to(book)}: {link}: no such file")
                continue
            if parsed.fragment and target.suffix == ".html":
                if parsed.fragment not in pages[target].ids:
                    broken.append(f"{path.relative_to(book)}: {link}: no such anchor")
    for line in broken:
        print(line, file=sys.stderr)
    print(f"{len(pages)} pages, {sum(len(p.links) for p in pages.values())} links, {len(broken)} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
