"""The shell blocks of README.md, docs/*.md and helm/README.md, and the checks every block
passes whether or not it runs here.

A fenced shell block names its class after the language, as in "```bash local":

- `local`: runs here on the local profile; tests/test_docs_run.py runs it in a fresh home,
  in the order a reader meets it;
- `prod`: needs the prod profile's services (S3, PostgreSQL, an MLflow server);
- `cluster`: needs a Kubernetes cluster (checked against the rendered chart);
- `guide`: a how-to guide's step, run by tests/test_guides.py after the guide's edits;
- `illustrative`: a shape to adapt (placeholders, a second version, a long-running server).

HTML comments after a block say what the test may observe once it ran
(`<!-- expect: KIND ARGS -->`: `output TEXT`, `materialized ASSET [FIRST...LAST]`,
`running sensor|schedule NAME`) and which example values replace its placeholders
(`<!-- values: FIRST=2013-02-01 LAST=2013-02-07 -->`). Every block, whatever its class, has
each command's subcommands and flags checked against the CLI's own definition (the click
commands behind `--help`), Makefile targets against the Makefile, and the rule that commands
acting on the served deployment name the location `make dev` serves (`-w workspace.yaml`).
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

REPO_ROOT = Path(__file__).resolve().parents[1]
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
CLASSES = ("local", "prod", "cluster", "guide", "illustrative")
FENCE = re.compile(r"^(\s*)```(.*)$")
COMMENT = re.compile(r"^\s*<!-- (expect|values): (.*?) -->\s*$")
# Commands whose flags cannot be checked here: their CLIs are not installed on the build
# machines (the cluster's and cloud's tools), or are shell built-ins and coreutils.
UNCHECKED = {
    "kubectl", "helm", "aws", "podman", "cat", "cd", "export", "for", "do", "done", "mkdir",
    "psql", "pip", "mlflow", "moto_server", "cp", "echo", "curl", "git", "until", "sleep",
    # pytest's options come from its plugins; tests/test_ui.py is what the block runs.
    "pytest",
}  # fmt: skip


def doc_files(root: Path = REPO_ROOT) -> list[Path]:
    """In the order a reader meets them: the README, then docs/, then the chart's README."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "helm" / "README.md"]


@dataclass
class Block:
    path: Path
    line: int
    language: str
    cls: str | None
    body: str
    expects: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT) if self.path.is_absolute() else self.path}:{self.line}"

    @property
    def is_shell(self) -> bool:
        return self.language in SHELL_LANGUAGES

    def with_values(self) -> str:
        text = self.body
        if "FIRST" in self.values and "LAST" in self.values:
            text = text.replace("FIRST...LAST", f"{self.values['FIRST']}...{self.values['LAST']}")
        for name, value in self.values.items():
            text = re.sub(rf"\b{name}\b", value, text)
        return text


def blocks(path: Path, text: str | None = None) -> list[Block]:
    """Every fenced block of one Markdown file, with the comments that follow it."""
    lines = (path.read_text() if text is None else text).split("\n")
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, info = match.groups()
        words = info.split()
        end = i + 1
        while end < len(lines) and not re.match(rf"^{indent}```\s*$", lines[end]):
            end += 1
        body = "\n".join(line[len(indent) :] for line in lines[i + 1 : end])
        block = Block(
            path, i + 1, words[0] if words else "", words[1] if len(words) > 1 else None, body
        )
        after = end + 1
        while after < len(lines) and (not lines[after].strip() or COMMENT.match(lines[after])):
            comment = COMMENT.match(lines[after])
            if comment and comment.group(1) == "expect":
                block.expects.append(comment.group(2))
            elif comment:
                block.values.update(w.split("=", 1) for w in comment.group(2).split())
            after += 1
        found.append(block)
        i = end + 1
    return found


def class_problems(block: Block) -> list[str]:
    if not block.language:
        return [f"{block.where}: a fenced block without a language (```text for prose)"]
    if block.is_shell and block.cls not in CLASSES:
        return [f"{block.where}: a shell block without a class (one of {', '.join(CLASSES)})"]
    return []


def commands(body: str) -> list[list[str]]:
    """Each command of a shell block as words: continuations joined, comments, heredoc
    bodies and `VAR=value` prefixes dropped, pipelines and `&&` split."""
    text = re.sub(r"<<'?(\w+)'?\n.*?\n\1\n", "\n", body + "\n", flags=re.S)
    text = text.replace("\\\n", " ")
    text = re.sub(r"\$\([^()]*\)", "SUBSTITUTED", text)  # a command substitution is one word
    found = []
    for line in text.split("\n"):
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        current: list[str] = []
        for word in [*words, ";"]:
            if word in {";", "&&", "||", "|", "&"} or word.endswith(";"):
                if word.endswith(";") and word != ";":
                    current.append(word[:-1])
                while current and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", current[0]):
                    current.pop(0)
                if current:
                    found.append(current)
                current = []
            elif not word.startswith((">", "2>")):
                current.append(word)
    return found


@functools.cache
def click_roots() -> dict[str, click.Command]:
    from dagster._cli import cli as dagster_cli
    from dagster._daemon.cli import create_dagster_daemon_cli
    from dagster_dg_cli.cli import cli as dg_cli
    from dbt.cli.main import cli as dbt_cli

    from trainflow.cli import main as trainflow_cli

    return {
        "trainflow": trainflow_cli,
        "dagster": dagster_cli,
        "dg": dg_cli,
        "dagster-daemon": create_dagster_daemon_cli(),
        "dbt": dbt_cli,
    }


@functools.cache
def make_targets() -> frozenset[str]:
    text = (REPO_ROOT / "Makefile").read_text()
    return frozenset(re.findall(r"^([a-z][a-z0-9-]*):", text, re.M))


@functools.cache
def script_flags(script: str) -> frozenset[str]:
    """The flags a repository script's argparse `--help` lists."""
    done = subprocess.run(
        [sys.executable, script, "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{script} --help: {done.stderr[-2000:]}"
    return frozenset(re.findall(r"(--[a-z][a-z0-9-]*)", done.stdout))


def click_problems(program: str, args: list[str]) -> list[str]:
    command = click_roots()[program]
    path = [program]
    rest = list(args)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(click.Context(command), rest[0])
        if sub is None:
            return [f"`{' '.join(path)}` has no subcommand {rest[0]!r}"]
        path.append(rest.pop(0))
        command = sub
    if isinstance(command, click.Group) and rest and rest[0] not in {"--help", "-h"}:
        return [f"`{' '.join(path)}` needs a subcommand"]
    options = {"--help", "-h"}
    for param in command.params:
        options.update(param.opts)
        options.update(param.secondary_opts)
    problems = []
    for word in rest:
        flag = word.split("=", 1)[0]
        if (
            flag.startswith("-")
            and flag != "-"
            and not re.match(r"^-\d", flag)
            and flag not in options
        ):
            problems.append(f"`{' '.join(path)}` has no option {flag}")
    return problems


# Subcommands that act on what the served deployment runs: they must name its location.
SERVED = {("sensor",), ("schedule",), ("job", "launch"), ("job", "backfill")}


def location_problems(program: str, args: list[str]) -> list[str]:
    if program != "dagster" or not args:
        return []
    if not any(tuple(args[: len(key)]) == key for key in SERVED) or "--help" in args:
        return []
    if "-m" in args or "--module-name" in args or "-f" in args or "--python-file" in args:
        return [
            f"`dagster {' '.join(args[:2])}` names a location by module: the served one is "
            "`-w workspace.yaml` (docs/automation.md says why)"
        ]
    if "-w" not in args and "--workspace" not in args:
        return [f"`dagster {' '.join(args[:2])}` names no location: add `-w workspace.yaml`"]
    return []


def command_problems(block: Block) -> list[str]:
    problems = []
    for words in commands(block.with_values()):
        if words[0] == "kubectl" and "exec" in words and "--" in words:
            words = words[words.index("--") + 1 :]  # the command run inside the pod
        program = words[0].removeprefix("../").removeprefix(".venv/bin/")
        if program in click_roots():
            found = click_problems(program, words[1:]) + location_problems(program, words[1:])
        elif program == "make":
            found = [
                f"the Makefile has no target {w!r}"
                for w in words[1:]
                if "=" not in w and not w.startswith("-") and w not in make_targets()
            ]
        elif program in {"python", "python3"} and len(words) > 1 and words[1].endswith(".py"):
            flags = script_flags(words[1])
            found = [
                f"{words[1]} has no option {w.split('=')[0]}"
                for w in words[2:]
                if w.startswith("--") and w.split("=")[0] not in flags
            ]
        elif (
            (program in {"python", "python3"} and words[1] in {"-m", "-c"})
            or program in UNCHECKED
            or program.startswith("$")
        ):
            found = []
        else:
            found = [
                f"`{program}`: a command this check does not know (add it, or to UNCHECKED with the reason)"
            ]
        problems += [f"{block.where}: {problem}" for problem in found]
    return problems


SLUG_DROP = re.compile(r"[^\w\- ]")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.M):
        found.add(SLUG_DROP.sub("", heading.strip().lower()).replace(" ", "-"))
    return found


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def link_problems(path: Path, text: str | None = None) -> list[str]:
    text = path.read_text() if text is None else text
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    problems = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+://|^mailto:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            problems.append(f"{path.name}: link to {target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            problems.append(f"{path.name}: link to {target}: no heading #{anchor}")
    return problems
