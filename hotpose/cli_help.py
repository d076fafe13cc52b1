"""``--help`` of the entry points: what each config group, option and key is for, from the YAML comments.

``configs/hydra/default.yaml`` sets Hydra's help template to ``${hotpose_help:<config name>}``; the
resolver (registered when this module is imported, which every entry point does) builds the text from
the config files themselves, so the help cannot drift from them:

- the groups an entry point composes (its ``defaults`` list; ``paths``, ``hydra`` and groups chosen
  through another one, like ``backbone_size``, are internal and hidden), described by the comment
  above their defaults entry; ``train`` also lists ``+sweep=``;
- each group's options, described by the first sentence of the option file's leading comment;
- the entry point's own keys, described by the comment above (or beside) each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: groups an entry point may compose that are not for the user to choose
HIDDEN_GROUPS = ("paths", "hydra")
#: groups used with ``+group=option`` on top of an entry point's defaults
EXTRA_GROUPS = {"train": ("sweep",)}
_WIDTH = 118
#: characters of an option's description (about two lines)
_SUMMARY = 150

_KEY = re.compile(r"^(\s*)([A-Za-z_][\w-]*):(.*)$")
_DEFAULT = re.compile(r"^\s*-\s*(optional\s+)?([\w/]+)(@[\w.]+)?\s*:\s*(\S*)")


@dataclass(frozen=True)
class Key:
    """One key of a config file: dotted name, value as written, and the comment describing it."""

    name: str
    value: str
    comment: str


def _comment_text(line: str) -> str:
    return line.strip().lstrip("#").strip()


def _split_inline(rest: str) -> tuple[str, str]:
    """``value  # comment`` → ``(value, comment)``; a ``#`` inside quotes is not a comment."""
    quote = None
    for i, ch in enumerate(rest):
        if ch in "'\"":
            quote = None if quote == ch else (quote or ch)
        elif ch == "#" and quote is None and (i == 0 or rest[i - 1].isspace()):
            return rest[:i].strip(), rest[i + 1:].strip()
    return rest.strip(), ""


def file_keys(path: Path) -> list[Key]:
    """Every mapping key of a YAML file with the comment lines just above it (and its inline comment)."""
    keys: list[Key] = []
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            pending = []
        elif stripped.startswith("#"):
            if not stripped.startswith("# @package"):
                pending.append(_comment_text(stripped))
        elif (match := _KEY.match(line)) is not None:
            indent, name = len(match.group(1)), match.group(2)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, name))
            value, inline = _split_inline(match.group(3))
            keys.append(Key(".".join(k for _, k in stack), value, " ".join([*pending, inline]).strip()))
            pending = []
        else:
            pending = []
    return keys


def defaults_entries(path: Path) -> list[tuple[str, str, str]]:
    """``(group, default option, comment)`` of the user-facing entries of a config's ``defaults`` list."""
    entries, pending, inside = [], [], False
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if line.startswith("defaults:"):
            inside = True
            continue
        if not inside:
            continue
        if stripped.startswith("#"):
            pending.append(_comment_text(stripped))
            continue
        if stripped and not stripped.startswith("-"):
            break  # the end of the defaults list
        match = _DEFAULT.match(line)
        if match and not match.group(1) and not match.group(3) and match.group(2) not in HIDDEN_GROUPS:
            entries.append((match.group(2), match.group(4), " ".join(pending)))
        pending = []
    return entries


def option_summary(path: Path) -> str:
    """An option file's leading comment, shortened to about two lines (empty when it has none)."""
    lines = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        text = _comment_text(stripped)
        if text.startswith(("@package", "python -m")):
            continue
        lines.append(text)
    text = " ".join(lines)
    return text if len(text) <= _SUMMARY else text[:_SUMMARY].rsplit(" ", 1)[0] + " …"


def _wrap(prefix: str, text: str, column: int, indent: int | None = None) -> list[str]:
    """``prefix`` padded to ``column``, then ``text`` wrapped; continuation lines start at ``indent``
    (default: ``column``)."""
    import textwrap

    if not text:
        return [prefix.rstrip()]
    return textwrap.wrap(text, width=_WIDTH, initial_indent=prefix.ljust(column), break_on_hyphens=False,
                         subsequent_indent=" " * (column if indent is None else indent)) or [prefix.rstrip()]


def groups_section(config_name: str, configs: Path = CONFIGS) -> list[str]:
    entries = defaults_entries(configs / f"{config_name}.yaml")
    entries += [(g, "", "") for g in EXTRA_GROUPS.get(config_name, ())]
    if not entries:
        return ["(none: the model and its settings come from the checkpoint)"]
    lines: list[str] = []
    for group, default, comment in entries:
        folder = configs / group
        use = f"+{group}=NAME" if group in EXTRA_GROUPS.get(config_name, ()) else f"{group}=NAME"
        head = f"{use}  (default: {default})" if default and default != "null" else use
        lines += _wrap(head + "  ", comment, 2, 2) if comment else [head]
        options = sorted(folder.glob("*.yaml"))
        column = max(len(o.stem) for o in options) + 6
        for option in options:
            mark = "*" if option.stem == default else " "
            lines += _wrap(f"  {mark} {option.stem}", option_summary(option), column)
        lines.append("")
    return lines


def keys_section(config_name: str, configs: Path = CONFIGS) -> list[str]:
    lines = []
    for key in file_keys(configs / f"{config_name}.yaml"):
        if key.name.split(".")[0] in ("defaults", *HIDDEN_GROUPS):
            continue
        depth = key.name.count(".")
        label = "  " * depth + (f"{key.name.rsplit('.', 1)[-1]}={key.value}" if key.value
                                else f"{key.name.rsplit('.', 1)[-1]}.*")
        lines += _wrap(f"  {label}  ", key.comment, 34)
    return lines


def help_text(config_name: str, configs: Path = CONFIGS) -> str:
    """The ``--help`` text of ``python -m hotpose.<config_name>``."""
    header = []
    for line in (configs / f"{config_name}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(_comment_text(line))
    groups = bool(defaults_entries(configs / f"{config_name}.yaml"))
    lines = [*header, "", "== Config groups == (group=NAME; * marks the default)", "",
             *groups_section(config_name, configs), "",
             f"== Options of {config_name} == (key=value; nested keys as a.b=value)", "",
             *keys_section(config_name, configs), "",
             "Any key of the composed config can be overridden, those of the chosen groups too"
             " (e.g. pruner.tokens=81)." if groups else "Nested keys are set with dots (e.g. a.b=value).",
             f"python -m hotpose.{config_name} [overrides] --cfg job   prints the composed config;",
             "--hydra-help lists Hydra's own flags and groups (launchers, sweepers)."]
    return "\n".join(lines).replace("$", "$$")  # Hydra fills the template with string.Template


OmegaConf.register_new_resolver("hotpose_help", help_text, replace=True)
