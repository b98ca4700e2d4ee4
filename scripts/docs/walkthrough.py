"""Turn the README's walkthrough (between <!-- walkthrough --> and
<!-- /walkthrough -->) into one bash script: every ```sh block in order, and each
```python block written to the file the text before it names ("Save this as
`upload.py`"), where the reader would save it.

Usage: walkthrough.py README.md > script.sh
"""
import re
import sys

text = open(sys.argv[1], encoding="utf-8").read()
start, end = text.index("<!-- walkthrough -->"), text.index("<!-- /walkthrough -->")
walkthrough = text[start:end]
out = ["set -euo pipefail"]
position = 0
blocks = 0
shell_blocks = 0
for block in re.finditer(r"```(\w+)\n(.*?)```", walkthrough, re.S):
    language, body = block.group(1), block.group(2)
    before = walkthrough[position:block.start()]
    position = block.end()
    blocks += 1
    if language == "sh":
        shell_blocks += 1
        out.append(f"echo '== walkthrough shell block {shell_blocks}' >&2")
        out.append(body)
    elif language == "python":
        saved = re.findall(r"Save this as `([^`]+)`", before)
        if not saved:
            sys.exit(f"python block {blocks}: the text before it names no file to save it as")
        out.append(f"cat > {saved[-1]} <<'PYTHON_BLOCK'\n{body}PYTHON_BLOCK")
    else:
        sys.exit(f"block {blocks}: a ```{language} block in the walkthrough; only sh and python run")
if blocks == 0:
    sys.exit("the walkthrough has no blocks")
print("\n".join(out))
