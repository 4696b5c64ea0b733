"""The plugin author's guide (docs/plugin-guide.md) and hookspecs.py agree.

* every hook specification has a docstring that states its return rule (a sentence starting
  with "Return");
* the guide documents every hook (a heading naming it), names no hook that does not exist
  (headings and ``polysock_xxx(`` calls), lists each hook's arguments in its section, and
  says "firstresult" / "historic" exactly for the hooks declared so.

The hooks come from the installed ``polysock.hookspecs`` (in tox, the wheel); the guide from the
repository checkout this test file belongs to.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from types import FunctionType

import pytest
from polysock import hookspecs

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "plugin-guide.md"
HEADING = re.compile(r"^#{2,6}\s+`?(polysock_\w+)\(([^)]*)\)`?\s*$", re.MULTILINE)
ANY_HEADING = re.compile(r"^#{1,6}\s", re.MULTILINE)
CALL = re.compile(r"\b(polysock_[a-z_]+)\(")
RETURN_RULE = re.compile(r"(?:^|[.:]\s+|\n\s*)Return\b")


def hook_specs() -> dict[str, FunctionType]:
    specs = {
        name: fn
        for name, fn in vars(hookspecs).items()
        if isinstance(fn, FunctionType) and hasattr(fn, "polysock_spec")
    }
    assert specs, "no hook specifications found in polysock.hookspecs"
    return specs


def spec_options(fn: FunctionType) -> dict[str, object]:
    return dict(fn.polysock_spec)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def guide() -> str:
    if not GUIDE.is_file():
        pytest.skip(f"the repository checkout is not here: {GUIDE} does not exist")
    return GUIDE.read_text(encoding="utf-8")


def sections(text: str) -> dict[str, str]:
    """Hook name -> the text of its section (from its heading to the next heading)."""
    out = {}
    headings = [m.start() for m in ANY_HEADING.finditer(text)] + [len(text)]
    for match in HEADING.finditer(text):
        end = next(h for h in headings if h > match.start())
        out[match.group(1)] = text[match.start() : end]
    return out


def test_every_hook_has_a_docstring_with_its_return_rule() -> None:
    missing = []
    for name, fn in sorted(hook_specs().items()):
        doc = inspect.getdoc(fn) or ""
        if not RETURN_RULE.search(doc):
            missing.append(name)
    assert not missing, (
        "hook specifications whose docstring does not state the return rule (a sentence "
        f"starting with 'Return', e.g. 'Return value ignored.'): {missing}"
    )


def test_every_hook_is_documented_in_the_guide(guide: str) -> None:
    documented = set(sections(guide))
    missing = sorted(set(hook_specs()) - documented)
    assert not missing, f"hooks without a section in {GUIDE.name}: {missing}"


def test_the_guide_names_no_hook_that_does_not_exist(guide: str) -> None:
    specs = set(hook_specs())
    named = set(sections(guide)) | set(CALL.findall(guide))
    unknown = sorted(named - specs)
    assert not unknown, f"{GUIDE.name} names hooks that hookspecs.py does not define: {unknown}"


def test_each_hook_section_lists_the_arguments_of_its_specification(guide: str) -> None:
    problems = []
    for name, section in sorted(sections(guide).items()):
        fn = hook_specs().get(name)
        if fn is None:
            continue  # reported by the test above
        params = list(inspect.signature(fn).parameters)
        heading = HEADING.search(section)
        assert heading is not None
        listed = [p.strip() for p in heading.group(2).split(",") if p.strip()]
        if listed != params:
            problems.append(f"{name}: heading lists {listed}, the specification {params}")
        for param in params:
            if f"`{param}`" not in section:
                problems.append(f"{name}: argument `{param}` is not described")
    assert not problems, "\n".join(problems)


def test_firstresult_and_historic_are_stated_exactly_where_they_apply(guide: str) -> None:
    problems = []
    for name, section in sorted(sections(guide).items()):
        fn = hook_specs().get(name)
        if fn is None:
            continue
        options = spec_options(fn)
        for flag in ("firstresult", "historic"):
            said = flag in section.lower()
            if said != bool(options.get(flag)):
                problems.append(
                    f"{name}: the specification has {flag}={bool(options.get(flag))}, the "
                    f"guide {'says' if said else 'does not say'} {flag!r}"
                )
    assert not problems, "\n".join(problems)


def test_the_checks_see_real_hooks() -> None:
    """The introspection above is not vacuous: it finds the hooks the core calls."""
    specs = hook_specs()
    assert {"polysock_add_framers", "polysock_make_framer", "polysock_connection_lost"} <= set(
        specs
    )
    assert spec_options(specs["polysock_make_framer"])["firstresult"] is True
    assert spec_options(specs["polysock_addhooks"])["historic"] is True
